"""`vlamix fast report`: how well the layout's FAST tokenizer compresses and reconstructs each robot
dataset's chunks, beside the FAST paper's Table I (tokens per 1-second chunk)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from vlamix.schemas.embodiment import load_embodiment
from vlamix.shards.manifest import read_manifest
from vlamix.shards.workdir import WorkDir
from vlamix.tokenizers.tokenizer_set import load_tokenizer_set
from vlamix.transforms.chain import apply, normalizer, stats_chain
from vlamix.transforms.stats import DimStats

__all__ = ["TABLE_I", "dataset_chunks", "fast_report"]

# FAST paper (arXiv 2501.09747) Table I: (dims, control rate Hz, tokens per 1-second chunk)
TABLE_I = {"BridgeV2": (7, 5, 20), "DROID": (7, 15, 29), "Bussing": (7, 20, 28), "Shirt fold": (14, 50, 53)}


def _closest(dims: int, hz: float) -> tuple[str, int]:
    name = min(TABLE_I, key=lambda k: abs(np.log(TABLE_I[k][1] / hz)) + abs(np.log(TABLE_I[k][0] / dims)))
    return name, TABLE_I[name][2]


def dataset_chunks(root: Path, name: str, entry: dict):
    """(embodiment, normalizer, native chunks [N, H, D], normalized chunks [N, H, D]) of one robot dataset
    of a layout, rebuilt from its work/ folder with the ingest's own chain: one chunk per frame."""
    emb = load_embodiment(root / entry["embodiment_spec"])
    stats = json.loads((root / entry["stats"]["path"]).read_text())
    norm = normalizer("actions", DimStats.from_json(stats["actions"]), stats.get("normalization", "quantile"))
    frames_dir = root / WorkDir.frames(name)
    if not frames_dir.is_dir():
        raise FileNotFoundError(
            f"{frames_dir}: the report needs the layout's work/ folder (run it where the ingest ran)"
        )
    native, normalized = [], []
    for part in sorted(frames_dir.glob("*.parquet")):
        df = pl.read_parquet(part, columns=["state", "action"])
        state, action = (
            np.asarray(df["state"].to_list(), np.float32),
            np.asarray(df["action"].to_list(), np.float32),
        )
        pre = apply(
            stats_chain(emb), {"state": state, "episode_actions": action, "frame": np.arange(len(state))}
        )
        native.append(pre["actions"])
        normalized.append(norm({"actions": pre["actions"]})["actions"])
    return emb, norm, np.concatenate(native), np.concatenate(normalized)


def fast_report(root: Path, max_chunks: int = 2000, seed: int = 0) -> dict:
    """Per robot dataset: tokens per chunk (mean, p50, p95), compression vs H*D, reconstruction error
    (normalized and native units) on up to `max_chunks` seeded chunks, and the Table I reference."""
    manifest = read_manifest(root)
    tok = load_tokenizer_set(str(root / manifest["tokenizer_set"]["path"]))
    out = {
        "tokenizer_set": manifest["tokenizer_set"]["sha256"],
        "scale": tok.fast.scale,
        "vocab_size": tok.fast.vocab_size,
        "datasets": {},
    }
    for name, entry in sorted(manifest["datasets"].items()):
        if entry["kind"] not in ("MM", "ME", "CE") or "stats" not in entry:
            continue
        emb, norm, native_all, norm_all = dataset_chunks(root, name, entry)
        pick = np.sort(np.random.default_rng(seed).permutation(len(norm_all))[:max_chunks])
        chunks, natives = norm_all[pick], native_all[pick]
        h, d = emb.chunk_horizon, emb.action_dim
        ok = tok.fast.in_range(chunks)
        ids = tok.fast.encode(chunks[ok])
        back, valid = tok.fast.decode(ids, h, d)
        err = back - chunks[ok]
        native_back = norm.inverse()({"actions": back})["actions"]
        lengths = np.array([len(i) for i in ids])
        ref_name, ref_tokens = _closest(d, emb.control_rate_hz)
        per_second = lengths.mean() * emb.control_rate_hz / h
        out["datasets"][name] = {
            "embodiment": emb.name,
            "horizon": h,
            "dims": d,
            "rate_hz": emb.control_rate_hz,
            "chunks": len(chunks),
            "out_of_range": int((~ok).sum()),
            "invalid_decodes": int((~valid).sum()),
            "tokens_mean": float(lengths.mean()),
            "tokens_p50": float(np.percentile(lengths, 50)),
            "tokens_p95": float(np.percentile(lengths, 95)),
            "compression": float(h * d / lengths.mean()),
            "rmse_normalized": float(np.sqrt((err**2).mean())),
            "max_abs_normalized": float(np.abs(err).max()),
            "rmse_native_per_dim": np.sqrt(((native_back - natives[ok]) ** 2).mean(axis=(0, 1)))
            .round(6)
            .tolist(),
            "table_i": {
                "closest": ref_name,
                "tokens_per_second": ref_tokens,
                "ours_per_second": float(per_second),
                "ratio": float(per_second / ref_tokens),
            },
        }
    return out


def format_report(report: dict) -> str:
    lines = [
        f"FAST tokenizer {report['tokenizer_set'][:12]}  scale {report['scale']}  vocab {report['vocab_size']}",
        "",
    ]
    lines.append(
        f"{'dataset':<20} {'H x D':>8} {'tokens mean/p50/p95':>22} {'compr.':>7} {'rmse':>7} {'per s':>7} {'Table I':>18} {'ratio':>6}"
    )
    for name, d in report["datasets"].items():
        t = d["table_i"]
        lines.append(
            f"{name:<20} {d['horizon']:>3} x {d['dims']:<3} {d['tokens_mean']:>8.1f}/{d['tokens_p50']:>5.0f}/{d['tokens_p95']:>5.0f}"
            f" {d['compression']:>7.1f} {d['rmse_normalized']:>7.4f} {t['ours_per_second']:>7.1f} {t['closest'] + ' ' + str(t['tokens_per_second']):>18} {t['ratio']:>6.2f}"
        )
    return "\n".join(lines)
