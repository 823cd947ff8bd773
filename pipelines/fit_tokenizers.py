"""The tokenizers step (driver side): fit one FAST tokenizer on the normalized chunks of every robot
dataset of the ingest and one text tokenizer on all of its text, or reuse a set given by --tokenizers."""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from tokenizers import Tokenizer
from vlamix.pipelines.datasets import robot_datasets
from vlamix.pipelines.options import IngestOptions
from vlamix.pipelines.stats_step import read_fit_chunks
from vlamix.schemas.expectations import SAMPLE_BAND
from vlamix.shards.layout import STATS_PATH, TOKENIZERS_DIR
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir
from vlamix.sources.config import SourcesFile
from vlamix.tokenizers.backbone import read_backbone_vocab
from vlamix.tokenizers.fit_process import fit_fast_apart
from vlamix.tokenizers.text import train_text_tokenizer
from vlamix.tokenizers.tokenizer_set import FAST_DIR, TEXT_FILE, TokenizerSet, load_tokenizer_set
from vlamix.tokenizers.vocab import LAYOUT_FILE, VocabLayout, hash_tokenizer_dir
from vlamix.transforms.chain import apply, normalizer
from vlamix.transforms.stats import DimStats

__all__ = ["FAST_SCALE", "FAST_VOCAB", "fit_tokenizer_set", "reuse_tokenizer_set", "step_tokenizers"]

log = logging.getLogger("vlamix.ingest")
FAST_SCALE, FAST_VOCAB = 10.0, 1024
_LOC = r"<loc\d{4}>"


def _normalized_chunks(out: Store, sources: SourcesFile) -> Iterator[np.ndarray]:
    """The stats step's FAST-fit candidates of every robot dataset, normalized with its statistics, less
    the chunks the samples' quality gate will reject (they do not shape the vocabulary); one episode's at
    a time."""
    work = WorkDir(out)
    for robot in robot_datasets(sources):
        if not robot.outcome(work).kept:
            continue
        src = robot.src
        stats = out.read_json(STATS_PATH.format(dataset=src.name))
        norm = normalizer("actions", DimStats.from_json(stats["actions"]), src.normalization)
        for episode, native in read_fit_chunks(work, src.name):
            chunks = apply([norm], {"actions": native})["actions"]
            ok = np.abs(chunks).reshape(len(chunks), -1).max(axis=1, initial=0.0) <= SAMPLE_BAND
            if not ok.all():
                log.warning(
                    "tokenizers: %s episode %d: %d chunks beyond the normalized band %g left out of the FAST fit",
                    src.name,
                    episode,
                    int((~ok).sum()),
                    SAMPLE_BAND,
                )
            yield chunks[ok]


def _corpus(out: Store, sources: SourcesFile) -> list[str]:
    """Every distinct text of the ingest: the robot frames' own (gathered by the stats step's pass), the
    HL / VI annotations' and the web items' turns (without location tokens)."""
    work = WorkDir(out)
    texts: set[str] = set(json.loads(out.read_text(WorkDir.FIT_TEXTS)))
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
    out: Store, sources: SourcesFile, text_tokenizer: Path | None = None, backbone: Path | None = None
) -> tuple[str, str]:
    """FAST on every robot dataset's normalized chunks (the stats step's seeded subsample); text BPE on the
    ingest's text, or the Hugging Face `tokenizer.json` given (a file, or a folder holding one), or the
    `backbone` snapshot's, with the set targeting that backbone's vocabulary (tokenizers/backbone.py)."""
    text, target = read_backbone_vocab(backbone) if backbone is not None else (None, None)  # fails early
    fast, chunks = fit_fast_apart(_normalized_chunks(out, sources), FAST_SCALE, FAST_VOCAB)
    if target is not None:
        log.info("tokenizers: the text part is %s's tokenizer (vocabulary %d)", target.name, target.vocab)
    elif text_tokenizer is not None:
        path = text_tokenizer / "tokenizer.json" if text_tokenizer.is_dir() else text_tokenizer
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no tokenizer.json to load as the text tokenizer")
        text = Tokenizer.from_file(str(path))
    else:
        text = train_text_tokenizer(_corpus(out, sources))
    assert text is not None
    layout = VocabLayout(
        text=text.get_vocab_size(),
        fast=fast.vocab_size,
        components={"text": TEXT_FILE, "fast": FAST_DIR},
        backbone=target,
    )
    name, digest = _save(out, TokenizerSet(text, fast, layout))
    log.info(
        "tokenizers: FAST %d tokens over %d chunks, text %d tokens",
        fast.vocab_size,
        chunks,
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
        name, digest = fit_tokenizer_set(opts.store, sources, opts.text_tokenizer, opts.backbone)
    opts.store.write_json(WorkDir.TOKENIZER_SET, {"path": f"{TOKENIZERS_DIR}/{name}", "sha256": digest})
    return name, digest
