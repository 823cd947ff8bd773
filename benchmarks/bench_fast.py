"""FAST: chunks/s of our batched encode and decode against a straightforward per-chunk reference (scipy's
DCT, then the same BPE, one chunk at a time, as the public reference processor does), on the normalized
action chunks of the bundled robot datasets; tokens must be identical. Tokens per 1-second chunk beside
the FAST paper's Table I."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.fft import dct, idct

from benchmarks.common import Result, best_times
from vlamix.pipelines.fast_report import dataset_chunks, fast_report
from vlamix.shards.manifest import read_manifest
from vlamix.tokenizers.tokenizer_set import load_tokenizer_set

DATASET = "mobile_aloha_sim"  # 50 x 14: the largest chunks of the samples


def reference_encode(fast, chunks: np.ndarray) -> list[list[int]]:
    """One chunk at a time: DCT, scale, round, flatten, shift, one character per integer, BPE."""
    out = []
    for chunk in chunks:
        q = np.around(dct(chunk, axis=0, norm="ortho") * fast.scale).astype(np.int64).reshape(-1)
        cp = 0x100 + (q - fast.min_token)
        cp = np.where(cp >= 0xD800, cp + 0x800, cp)  # the same total symbol map as ours
        out.append(fast.bpe.encode("".join(map(chr, cp))).ids)
    return out


def reference_decode(fast, ids: list[list[int]], horizon: int, dim: int) -> np.ndarray:
    out = np.empty((len(ids), horizon, dim))
    for b, seq in enumerate(ids):
        cp = np.array([ord(c) for c in fast.bpe.decode(seq)], dtype=np.int64)
        k = np.where(cp >= 0xE000, cp - 0x800, cp) - 0x100
        out[b] = idct((k + fast.min_token).reshape(horizon, dim) / fast.scale, axis=0, norm="ortho")
    return out


def run(layout: Path, max_chunks: int = 4000) -> list[Result]:
    manifest = read_manifest(layout)
    fast = load_tokenizer_set(str(layout / manifest["tokenizer_set"]["path"])).fast
    emb, _, _, chunks = dataset_chunks(layout, DATASET, manifest["datasets"][DATASET])
    chunks = chunks[fast.in_range(chunks)][:max_chunks].astype(np.float64)
    h, d = emb.chunk_horizon, emb.action_dim
    ours_ids, ref_ids = fast.encode(chunks), reference_encode(fast, chunks)
    identical = ours_ids == ref_ids
    t_ours, t_ref = best_times([lambda: fast.encode(chunks), lambda: reference_encode(fast, chunks)])
    back, valid = fast.decode(ours_ids, h, d)
    same_decode = bool(valid.all() and np.allclose(back, reference_decode(fast, ours_ids, h, d)))
    td_ours, td_ref = best_times(
        [lambda: fast.decode(ours_ids, h, d), lambda: reference_decode(fast, ours_ids, h, d)]
    )
    n = len(chunks)
    shape = f"{n} chunks of {h}x{d} ({DATASET})"
    results = [
        Result(
            "fast",
            "encode",
            "chunks/s",
            n / t_ours,
            n / t_ref,
            "per-chunk scipy DCT + BPE",
            goal=3.0,
            note=f"{shape}; tokens identical: {identical}",
            extra={"identical_tokens": identical},
        ),
        Result(
            "fast",
            "decode",
            "chunks/s",
            n / td_ours,
            n / td_ref,
            "per-chunk BPE + scipy IDCT",
            note=f"{shape}; same actions: {same_decode}",
            extra={"same_actions": same_decode},
        ),
    ]
    report = fast_report(layout, max_chunks=2000)
    for name, r in report["datasets"].items():
        t = r["table_i"]
        results.append(
            Result(
                "fast",
                f"tokens per second of actions: {name}",
                "tokens/s of robot time",
                t["ours_per_second"],
                t["tokens_per_second"],
                f"FAST Table I: {t['closest']}",
                lower_is_better=True,
                note=f"{r['horizon']}x{r['dims']} at {r['rate_hz']} Hz, {r['tokens_mean']:.1f} tokens per chunk, "
                f"compression {r['compression']:.1f}x, rmse {r['rmse_normalized']:.4f} (normalized)",
            )
        )
    return results
