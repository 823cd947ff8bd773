"""The stats step: one pass over every kept robot episode's frame Parquet (polars; never video) gives
three things, so no later step reads the frames again:

- exact per-dim statistics over exactly what gets normalized (every step of every action chunk, deltas
  where the embodiment asks); above `--stats-max-frames` frames per dataset, a seeded subsample of frames;
- the FAST fit's chunk candidates (`work/fit/<dataset>.npz`, before normalization: the tokenizers step
  normalizes them with these statistics); above `--fast-fit-chunks` in all, a seeded subsample;
- the frames' distinct texts for the text tokenizer's corpus (`work/fit/texts.json`)."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import polars as pl

from vlamix.pipelines.datasets import robot_datasets
from vlamix.pipelines.options import IngestOptions
from vlamix.pipelines.robot_kind import RobotDataset
from vlamix.schemas.outcome import ExtractedEpisode
from vlamix.shards.layout import STATS_PATH
from vlamix.shards.workdir import WorkDir
from vlamix.sources.config import SourcesFile
from vlamix.transforms.chain import apply, stats_chain
from vlamix.transforms.stats import STATS_VERSION, DimStats, compute_stats

__all__ = ["TEXT_COLUMNS", "TINY_SPAN", "read_fit_chunks", "step_stats"]

log = logging.getLogger("vlamix.ingest")
TINY_SPAN = 1e-4  # a dim whose q01..q99 span is below this blows up under quantile normalization
TEXT_COLUMNS = ("task", "subtask", "verbal_instruction")


def _subsample(n: int, p: float, seed: list[int]) -> np.ndarray:
    """Frames 0..n-1, or above a share `p` < 1 those a seeded draw keeps (the same whatever the engine)."""
    frames = np.arange(n)
    return frames if p >= 1.0 else frames[np.random.default_rng(seed).random(n) < p]


def _scan(opts: IngestOptions, robot: RobotDataset, kept: list[ExtractedEpisode], fit_p: float, texts: set):
    """One pass over the dataset's kept episodes: (state rows, chunk-step rows) for statistics, and the
    FAST-fit chunk candidates with their episode; the frames' texts go into `texts`."""
    emb = robot.embodiment
    chain = stats_chain(emb)
    stats_p = min(1.0, opts.stats_max_frames / max(sum(e.frames for e in kept), 1))
    state_rows, action_rows, fit, fit_episodes = [], [], [], []
    for e in kept:
        with opts.store.open(e.frames_path) as f:
            df = pl.read_parquet(f, columns=["state", "action", *TEXT_COLUMNS])
        for col in TEXT_COLUMNS:
            texts |= {t for t in df[col].unique().to_list() if t}
        state = np.asarray(df["state"].to_list(), np.float32)
        action = np.asarray(df["action"].to_list(), np.float32)
        frames = _subsample(len(state), stats_p, [opts.seed, e.episode])
        out = apply(chain, {"state": state[frames], "episode_actions": action, "frame": frames})
        state_rows.append(out["state"])
        action_rows.append(out["actions"].reshape(-1, emb.action_dim))  # every step of every chunk
        frames = _subsample(len(state), fit_p, [opts.seed, 7, e.episode])
        chunks = apply(chain, {"state": state[frames], "episode_actions": action, "frame": frames})["actions"]
        fit.append(chunks)
        fit_episodes.append(np.full(len(chunks), e.episode, np.int64))
    return state_rows, action_rows, fit, fit_episodes


def step_stats(opts: IngestOptions, sources: SourcesFile) -> None:
    work = opts.work
    robots = [(r, r.outcome(work).kept) for r in robot_datasets(sources)]
    fit_p = min(1.0, opts.fast_fit_chunks / max(sum(e.frames for _, kept in robots for e in kept), 1))
    texts: set[str] = set()
    for robot, kept in robots:
        opts.store.rm(WorkDir.fit_chunks(robot.name))
        if not kept:
            log.warning("stats: %s has no episode left to compute statistics from", robot.name)
            continue
        state_rows, action_rows, fit, fit_episodes = _scan(opts, robot, kept, fit_p, texts)
        _write_stats(opts, robot, sum(e.frames for e in kept), state_rows, action_rows)
        buf = io.BytesIO()
        np.savez(buf, chunks=np.concatenate(fit), episodes=np.concatenate(fit_episodes))
        opts.store.write_bytes(WorkDir.fit_chunks(robot.name), buf.getvalue())
    opts.store.write_text(WorkDir.FIT_TEXTS, json.dumps(sorted(texts)))


def read_fit_chunks(work: WorkDir, dataset: str) -> list[tuple[int, np.ndarray]]:
    """The FAST-fit chunk candidates the stats step kept for `dataset`, per episode in episode order."""
    rel = WorkDir.fit_chunks(dataset)
    if not work.store.exists(rel):
        raise FileNotFoundError(
            f"{work.store.url_of(rel)} is missing: run the stats step first (`--only stats`)"
        )
    with work.store.open(rel) as f, np.load(f) as npz:
        chunks, episodes = npz["chunks"], npz["episodes"]
    return [(int(e), chunks[episodes == e]) for e in np.unique(episodes)]


def _write_stats(
    opts: IngestOptions, robot: RobotDataset, total: int, state_rows: list, action_rows: list
) -> None:
    emb = robot.embodiment
    state_stats: DimStats = compute_stats(np.concatenate(state_rows))
    action_stats: DimStats = compute_stats(np.concatenate(action_rows))
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
