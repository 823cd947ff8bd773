"""The stats step, run by the engine where the frames are: two passes of stats units
(pipelines/stats_units.py) over every kept robot episode's frame Parquet give, with the driver merging
their partial summaries one file at a time (memory independent of the number of frames):

- exact per-dim statistics over exactly what gets normalized (every step of every action chunk, deltas
  where the embodiment asks), equal to numpy's over all the values (transforms/stats_merge.py); a seeded
  frame subsample only when `--stats-max-frames` asks for one;
- the FAST fit's chunk candidates (`work/fit/<dataset>.npz`, before normalization: the tokenizers step
  normalizes them with these statistics), each unit drawing its episodes' seeded share; above
  `--fast-fit-chunks` in all, that share is below 1, and the driver's seeded choice keeps each dataset
  within its share of the cap, so the candidates never exceed it;
- the frames' distinct texts for the text tokenizer's corpus (`work/fit/texts.json`)."""

from __future__ import annotations

import json
import logging
import tempfile
import zipfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np

from vlamix.pipelines.datasets import robot_datasets
from vlamix.pipelines.options import IngestOptions
from vlamix.pipelines.progress import step_progress
from vlamix.pipelines.robot_kind import RobotDataset
from vlamix.pipelines.stats_units import TASK_FRAMES, TEXT_COLUMNS, StatsUnit, cap_draw, fit_quota, read_part
from vlamix.schemas.outcome import ExtractedEpisode
from vlamix.shards.layout import STATS_PATH
from vlamix.shards.workdir import WorkDir
from vlamix.sources.config import SourcesFile
from vlamix.transforms.stats import STATS_VERSION, DimStats
from vlamix.transforms.stats_merge import FirstMerge, FirstPass, Plan, SecondMerge, SecondPass, finish

__all__ = ["TEXT_COLUMNS", "TINY_SPAN", "read_fit_chunks", "run_by_engine", "step_stats"]

log = logging.getLogger("vlamix.ingest")
RunUnits = Callable[[IngestOptions, list[StatsUnit]], None]
# Up to this many frames in all, the driver runs the stats units itself: two engine jobs (a Beam pipeline
# starts its worker processes, ~3 s each) would cost more than summarizing the frames.
IN_DRIVER_FRAMES = 20_000
TINY_SPAN = 1e-4  # a dim whose q01..q99 span is below this blows up under quantile normalization


def _units(
    opts: IngestOptions, robot: RobotDataset, kept: list[ExtractedEpisode], fit_p: float
) -> list[StatsUnit]:
    """The dataset's first-pass units: runs of kept episodes of about TASK_FRAMES frames, in kept order."""
    total = sum(e.frames for e in kept)
    cap = opts.stats_max_frames
    stats_p = 1.0 if cap is None else min(1.0, cap / max(total, 1))
    groups: list[list[ExtractedEpisode]] = [[]]
    for e in kept:
        if groups[-1] and sum(x.frames for x in groups[-1]) + e.frames > TASK_FRAMES:
            groups.append([])
        groups[-1].append(e)
    return [
        StatsUnit(
            opts.url,
            robot.name,
            k,
            robot.embodiment,
            tuple((e.episode, e.frames_path) for e in group),
            opts.seed,
            stats_p,
            fit_p,
        )
        for k, group in enumerate(groups)
    ]


def run_in_driver(opts: IngestOptions, units: list[StatsUnit]) -> None:
    """Every unit in this process, one at a time (memory: one unit's frames)."""
    for unit in units:
        unit.run()


def run_by_engine(opts: IngestOptions, units: list[StatsUnit]) -> None:
    """Every unit, by the engine that runs the ingest (each writes its own partial file)."""
    if not units:
        return
    if opts.engine == "ray":
        from vlamix.pipelines import ray_jobs

        with ray_jobs.ray_session(opts.ray_address, opts.workers):  # joins step_stats' session
            ray_jobs.run_units(units)
    else:
        from vlamix.pipelines.beam_jobs import beam_options, run_units

        run_units(units, beam_options(opts.workers, opts.runner_args))


def step_stats(opts: IngestOptions, sources: SourcesFile, run: RunUnits = run_by_engine) -> None:
    """Statistics, FAST-fit chunks and texts of every robot dataset; `run` runs each pass's units (the
    engine by default; the engine-free unit tests run them in process)."""
    work = opts.work
    robots = [(r, r.outcome(work).kept) for r in robot_datasets(sources)]
    fit_p = min(1.0, opts.fast_fit_chunks / max(sum(e.frames for _, kept in robots for e in kept), 1))
    opts.store.rmtree(WorkDir.STATS_PARTS)
    first = {}
    for robot, kept in robots:
        opts.store.rm(WorkDir.fit_chunks(robot.name))
        if not kept:
            log.warning("stats: %s has no episode left to compute statistics from", robot.name)
            continue
        first[robot.name] = _units(opts, robot, kept, fit_p)
    frames = sum(e.frames for robot, kept in robots if robot.name in first for e in kept)
    if run is run_by_engine and frames <= IN_DRIVER_FRAMES:  # starting workers costs more than the work
        run = run_in_driver
    with (
        step_progress(opts, "stats", 2 * sum(len(u) for u in first.values()), 2 * frames),
        _engine_session(opts, run if first else None),
    ):
        _passes(opts, robots, first, run)


def _engine_session(opts: IngestOptions, run: RunUnits | None) -> AbstractContextManager:
    """One Ray session for both passes (a local Ray takes seconds to start); `run_by_engine`'s own
    session then joins it. Beam, and a `run` of the caller's, need none."""
    if run is not run_by_engine or opts.engine != "ray":
        return nullcontext()
    from vlamix.pipelines import ray_jobs

    return ray_jobs.ray_session(opts.ray_address, opts.workers)


def _passes(opts: IngestOptions, robots: list, first: dict[str, list[StatsUnit]], run: RunUnits) -> None:
    run(opts, [u for units in first.values() for u in units])
    all_frames = sum(e.frames for robot, kept in robots if robot.name in first for e in kept)
    texts: set[str] = set()
    second, merged = {}, {}
    for robot, kept in robots:
        if robot.name not in first:
            continue
        state, actions = FirstMerge(robot.embodiment.state_dim), FirstMerge(robot.embodiment.action_dim)
        counts = []
        for unit in first[robot.name]:  # one partial in memory at a time, in task order
            part = read_part(opts.url, WorkDir.stats_part(robot.name, 1, unit.task))
            state.add(_as(part["state"], FirstPass))
            actions.add(_as(part["actions"], FirstPass))
            counts.append(len(_as(part["fit_episodes"], np.ndarray)))
            texts |= set(_as(part["texts"], list))
        quota = fit_quota(opts.fast_fit_chunks, sum(e.frames for e in kept), all_frames)
        keep = cap_draw(sum(counts), quota, [opts.seed, 7, *robot.name.encode()])
        _write_fit(opts, robot.name, [u.task for u in first[robot.name]], counts, keep)
        plans = (Plan.of(state), Plan.of(actions))
        merged[robot.name] = plans
        second[robot.name] = [
            StatsUnit(u.out, u.dataset, u.task, u.embodiment, u.episodes, u.seed, u.stats_p, u.fit_p, plans)
            for u in first[robot.name]
        ]
    run(opts, [u for units in second.values() for u in units])
    for robot, kept in robots:
        if robot.name not in second:
            continue
        plans = merged[robot.name]
        state, actions = SecondMerge(plans[0]), SecondMerge(plans[1])
        for unit in second[robot.name]:
            part = read_part(opts.url, WorkDir.stats_part(robot.name, 2, unit.task))
            state.add(_as(part["state"], SecondPass))
            actions.add(_as(part["actions"], SecondPass))
        _write_stats(
            opts, robot, sum(e.frames for e in kept), finish(plans[0], state), finish(plans[1], actions)
        )
    opts.store.write_text(WorkDir.FIT_TEXTS, json.dumps(sorted(texts)))
    opts.store.rmtree(WorkDir.STATS_PARTS)


def _write_fit(
    opts: IngestOptions, dataset: str, tasks: list[int], counts: list[int], keep: np.ndarray
) -> None:
    """The kept FAST-fit chunks (`keep`: positions over the units' chunks, in task order) into
    `work/fit/`, an .npz of `chunks` and `episodes` streamed one unit's chunks at a time: the driver
    never holds the whole sample (up to --fast-fit-chunks, 56 MB at 20,000 50x14 chunks, several
    copies of it when concatenated and saved at once)."""
    picks, episodes, shape, dtype, start = [], [], None, np.dtype(np.float32), 0
    for n in counts:
        local = keep[(keep >= start) & (keep < start + n)] - start
        picks.append(local)
        start += n
    with tempfile.TemporaryDirectory(prefix="vlamix-fit-") as tmp:
        path = Path(tmp) / "fit.npz"
        with zipfile.ZipFile(path, "w") as z:
            with z.open("chunks.npy", "w", force_zip64=True) as f:
                wrote_header = False
                for task, local in zip(tasks, picks, strict=True):
                    part = read_part(opts.url, WorkDir.stats_part(dataset, 1, task))
                    chunks = _as(part["fit_chunks"], np.ndarray)[local]
                    episodes.append(_as(part["fit_episodes"], np.ndarray)[local])
                    if not wrote_header:  # the shape and type of the first unit's chunks: all share them
                        shape, dtype = chunks.shape[1:], chunks.dtype
                        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
                        np.lib.format.write_array_header_2_0(f, {**header, "shape": (len(keep), *shape)})
                        wrote_header = True
                    f.write(np.ascontiguousarray(chunks, dtype=dtype).tobytes())
            with z.open("episodes.npy", "w") as f:
                np.lib.format.write_array(f, np.concatenate(episodes) if episodes else np.zeros(0, np.int64))
        opts.store.put_file(path, WorkDir.fit_chunks(dataset))


def _as(value: object, kind: type):
    if not isinstance(value, kind):
        raise TypeError(f"a stats partial holds {type(value).__name__} where {kind.__name__} belongs")
    return value


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
    opts: IngestOptions, robot: RobotDataset, total: int, state_stats: DimStats, action_stats: DimStats
) -> None:
    emb = robot.embodiment
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
        "subsampled": opts.stats_max_frames is not None and total > opts.stats_max_frames,
        "horizon": emb.chunk_horizon,
        "delta_dims": [d.name for d in emb.action if d.delta],
        "warnings": warnings,
        "state": {"names": [d.name for d in emb.state], **state_stats.to_json()},
        "actions": {"names": [d.name for d in emb.action], **action_stats.to_json()},
    }
    opts.store.write_json(STATS_PATH.format(dataset=robot.name), doc)
    log.info("stats: %s over %d frames (%d chunk steps)", robot.name, total, action_stats.count)
