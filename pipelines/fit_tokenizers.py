"""The tokenizers step (driver side): fit one FAST tokenizer on the normalized chunks of every robot
dataset of the ingest and one text tokenizer on all of its text, or reuse a set given by --tokenizers."""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from tokenizers import Tokenizer
from vlamix.pipelines.datasets import robot_datasets
from vlamix.pipelines.options import FAST_FIT_CHUNKS, IngestOptions
from vlamix.schemas.expectations import SAMPLE_BAND
from vlamix.shards.layout import STATS_PATH, TOKENIZERS_DIR
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir
from vlamix.sources.config import SourcesFile
from vlamix.tokenizers.fast import FastTokenizer
from vlamix.tokenizers.text import train_text_tokenizer
from vlamix.tokenizers.tokenizer_set import FAST_DIR, TEXT_FILE, TokenizerSet, load_tokenizer_set
from vlamix.tokenizers.vocab import LAYOUT_FILE, VocabLayout, hash_tokenizer_dir
from vlamix.transforms.chain import apply, normalizer, stats_chain
from vlamix.transforms.stats import DimStats

__all__ = ["FAST_SCALE", "FAST_VOCAB", "fit_tokenizer_set", "reuse_tokenizer_set", "step_tokenizers"]

log = logging.getLogger("vlamix.ingest")
FAST_SCALE, FAST_VOCAB = 10.0, 1024
_LOC = r"<loc\d{4}>"


def _normalized_chunks(out: Store, sources: SourcesFile, seed: int, max_chunks: int) -> list[np.ndarray]:
    batches = []
    work = WorkDir(out)
    robots = [(r, r.outcome(work).kept) for r in robot_datasets(sources)]
    total = sum(e.frames for _, kept in robots for e in kept)
    keep_p = min(1.0, max_chunks / max(total, 1))
    for robot, kept in robots:
        if not kept:
            continue
        emb, src = robot.embodiment, robot.src
        stats = out.read_json(STATS_PATH.format(dataset=src.name))
        chain = [
            *stats_chain(emb),
            normalizer("actions", DimStats.from_json(stats["actions"]), src.normalization),
        ]
        for e in kept:
            with out.open(e.frames_path) as f:
                df = pl.read_parquet(f, columns=["state", "action"])
            state = np.asarray(df["state"].to_list(), np.float32)
            action = np.asarray(df["action"].to_list(), np.float32)
            frames = np.arange(len(state))
            if keep_p < 1.0:
                frames = frames[np.random.default_rng([seed, 7, e.episode]).random(len(frames)) < keep_p]
            chunks = apply(chain, {"state": state[frames], "episode_actions": action, "frame": frames})[
                "actions"
            ]
            # chunks the samples' quality gate will reject do not shape the vocabulary
            ok = np.abs(chunks).reshape(len(chunks), -1).max(axis=1, initial=0.0) <= SAMPLE_BAND
            if not ok.all():
                log.warning(
                    "tokenizers: %s episode %d: %d chunks beyond the normalized band %g left out of the FAST fit",
                    src.name,
                    e.episode,
                    int((~ok).sum()),
                    SAMPLE_BAND,
                )
            batches.append(chunks[ok])
    return batches


def _corpus(out: Store, sources: SourcesFile) -> list[str]:
    """Every distinct text of the ingest: the robot frames' own, the HL / VI annotations' and the web
    items' turns (without location tokens)."""
    texts: set[str] = set()
    work = WorkDir(out)
    for robot in robot_datasets(sources):
        for e in robot.outcome(work).kept:
            with out.open(e.frames_path) as f:
                df = pl.read_parquet(f, columns=["task", "subtask", "verbal_instruction"])
            for col in df.columns:
                texts |= {t for t in df[col].unique().to_list() if t}
    for a in sources.annotations:  # spans over written episodes only (annotation_kind.py)
        texts |= {s.text for group in work.read_spans(a.name).values() for s in group if s.text}
    for w in sources.web:
        for part in out.glob(f"{WorkDir.items(w.name)}/*.parquet"):
            with out.open(part) as f:
                items = pl.read_parquet(f, columns=["turns"])["turns"].to_list()
            for item in items:
                for turn in item:
                    texts |= {
                        re.sub(_LOC, "", turn["prompt"]).strip(),
                        re.sub(_LOC, "", turn["target"]).strip(),
                    }
    return sorted(texts)


def fit_tokenizer_set(
    out: Store,
    sources: SourcesFile,
    seed: int,
    text_tokenizer: Path | None = None,
    max_chunks: int = FAST_FIT_CHUNKS,
) -> tuple[str, str]:
    """FAST on every robot dataset's normalized chunks; text BPE on the ingest's text, or the Hugging Face
    `tokenizer.json` given (a file, or a folder holding one, e.g. a PaliGemma tokenizer downloaded by hand)."""
    batches = _normalized_chunks(out, sources, seed, max_chunks)
    if not batches:
        raise ValueError("no robot chunks to fit FAST on: give --tokenizers DIR to reuse a set")
    fast = FastTokenizer.fit(batches, scale=FAST_SCALE, vocab_size=FAST_VOCAB)
    if text_tokenizer is not None:
        path = text_tokenizer / "tokenizer.json" if text_tokenizer.is_dir() else text_tokenizer
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no tokenizer.json to load as the text tokenizer")
        text = Tokenizer.from_file(str(path))
    else:
        text = train_text_tokenizer(_corpus(out, sources))
    layout = VocabLayout(
        text=text.get_vocab_size(), fast=fast.vocab_size, components={"text": TEXT_FILE, "fast": FAST_DIR}
    )
    name, digest = _save(out, TokenizerSet(text, fast, layout))
    log.info(
        "tokenizers: FAST %d tokens over %d chunks, text %d tokens",
        fast.vocab_size,
        sum(len(b) for b in batches),
        text.get_vocab_size(),
    )
    return name, digest


def _save(out: Store, tokset: TokenizerSet) -> tuple[str, str]:
    """Write the set under `tokenizers/<sha256>/` of the layout (locally, then uploaded when remote)."""
    local = out.local()
    if local is not None:
        return tokset.save(local / TOKENIZERS_DIR)
    with tempfile.TemporaryDirectory() as tmp:
        name, digest = tokset.save(Path(tmp))
        out.put_dir(Path(tmp) / name, f"{TOKENIZERS_DIR}/{name}")
    return name, digest


def reuse_tokenizer_set(out: Store, folder: Path) -> tuple[str, str]:
    """Copy a set fitted by another ingest (so the two layouts can be mixed) under its own hash."""
    load_tokenizer_set(str(folder.resolve()))  # refuse anything that is not a complete set
    digest = hash_tokenizer_dir(folder)
    if not out.exists(f"{TOKENIZERS_DIR}/{digest}/{LAYOUT_FILE}"):
        out.put_dir(folder, f"{TOKENIZERS_DIR}/{digest}")
    return digest, digest


def step_tokenizers(opts: IngestOptions, sources: SourcesFile) -> tuple[str, str]:
    """Fit the layout's tokenizer set (or copy the one given) and record it in work/ for the build."""
    if opts.tokenizers is not None:
        name, digest = reuse_tokenizer_set(opts.store, opts.tokenizers)
    else:
        name, digest = fit_tokenizer_set(
            opts.store, sources, opts.seed, opts.text_tokenizer, opts.fast_fit_chunks
        )
    opts.store.write_json(WorkDir.TOKENIZER_SET, {"path": f"{TOKENIZERS_DIR}/{name}", "sha256": digest})
    return name, digest
