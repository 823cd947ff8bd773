"""The stats step: exact per-dim statistics of every robot dataset over exactly what gets normalized
(every step of every action chunk, deltas where the embodiment asks), from the frame Parquet (polars),
never from video. Above `--stats-max-frames` frames a seeded subsample of frames."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import polars as pl

from vlamix.pipelines.datasets import robot_datasets
from vlamix.pipelines.options import IngestOptions
from vlamix.schemas.outcome import ExtractedEpisode
from vlamix.shards.layout import STATS_PATH
from vlamix.sources.config import SourcesFile
from vlamix.transforms.chain import apply, stats_chain
from vlamix.transforms.stats import STATS_VERSION, compute_stats

__all__ = ["TINY_SPAN", "episode_arrays", "step_stats"]

log = logging.getLogger("vlamix.ingest")
TINY_SPAN = 1e-4  # a dim whose q01..q99 span is below this blows up under quantile normalization


def episode_arrays(opts: IngestOptions, e: ExtractedEpisode) -> tuple[np.ndarray, np.ndarray]:
    """(native state, native actions) of one extracted episode, read from its frame Parquet."""
    with opts.store.open(e.frames_path) as f:
        df = pl.read_parquet(f, columns=["state", "action"])
    return np.asarray(df["state"].to_list(), np.float32), np.asarray(df["action"].to_list(), np.float32)


def _dataset_tensors(
    opts: IngestOptions, kept: list[ExtractedEpisode]
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per kept episode, one at a time: native state, native actions and the frames whose chunks
    statistics see (all of them, or above `opts.stats_max_frames` frames a seeded subsample)."""
    total = sum(e.frames for e in kept)
    keep_p = min(1.0, opts.stats_max_frames / max(total, 1))
    for e in kept:
        state, action = episode_arrays(opts, e)
        frames = np.arange(len(state))
        if keep_p < 1.0:  # seeded per episode: the same frames whatever the engine or order
            frames = frames[np.random.default_rng([opts.seed, e.episode]).random(len(frames)) < keep_p]
        yield state, action, frames


def step_stats(opts: IngestOptions, sources: SourcesFile) -> None:
    for robot in robot_datasets(sources):
        kept = robot.outcome(opts.work).kept
        if not kept:
            log.warning("stats: %s has no episode left to compute statistics from", robot.name)
            continue
        emb = robot.embodiment
        chain = stats_chain(emb)
        total = sum(e.frames for e in kept)
        state_rows, action_rows = [], []
        for state, action, frames in _dataset_tensors(opts, kept):
            out = apply(chain, {"state": state[frames], "episode_actions": action, "frame": frames})
            state_rows.append(out["state"])
            action_rows.append(out["actions"].reshape(-1, emb.action_dim))  # every step of every chunk
        state_stats = compute_stats(np.concatenate(state_rows))
        action_stats = compute_stats(np.concatenate(action_rows))
        warnings = []
        for part, st, dims in (("state", state_stats, emb.state), ("actions", action_stats, emb.action)):
            span = np.asarray(st.percentiles["q99"]) - np.asarray(st.percentiles["q01"])
            for i in np.flatnonzero(span < TINY_SPAN):
                msg = f"{part} dim {dims[i].name}: q01..q99 span {span[i]:.2e} is tiny; normalized values will blow up"
                log.warning("stats: %s: %s", robot.name, msg)
                warnings.append(msg)
        doc = {
            "version": STATS_VERSION,
            "dataset": robot.name,
            "embodiment": emb.name,
            "normalization": robot.src.normalization,
            "frames": total,
            "subsampled": total > opts.stats_max_frames,
            "horizon": emb.chunk_horizon,
            "delta_dims": [d.name for d in emb.action if d.delta],
            "warnings": warnings,
            "state": {"names": [d.name for d in emb.state], **state_stats.to_json()},
            "actions": {"names": [d.name for d in emb.action], **action_stats.to_json()},
        }
        opts.store.write_json(STATS_PATH.format(dataset=robot.name), doc)
        log.info("stats: %s over %d frames (%d chunk steps)", robot.name, total, action_stats.count)
