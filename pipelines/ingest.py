"""`vlamix ingest`: extract -> stats -> tokenizers -> build -> index + manifest, on the chosen engine.

Each step reads what the previous one left under the layout's `work/` folder, so `--only STEP` re-runs
one step, and every step is written once: the engines only run `steps.py` functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import polars as pl

from vlamix.pipelines.annotations import annotation_spans, span_samples
from vlamix.pipelines.build_plan import (
    ESTIMATE_SAMPLES,
    fingerprint,
    prepare_dataset,
    remove_stray_temps,
    samples_per_shard,
)
from vlamix.pipelines.extract_step import step_extract
from vlamix.pipelines.failed import (
    DatasetsFailed,
    failed_entries,
    live_sources,
    read_failures,
)
from vlamix.pipelines.fit_tokenizers import FAST_FIT_CHUNKS, fit_tokenizer_set, reuse_tokenizer_set
from vlamix.pipelines.index_step import write_index_and_manifest
from vlamix.pipelines.outcomes import build_quarantine, robot_outcomes, web_outcomes
from vlamix.pipelines.quality import DOCS_DIR, GATE_PREFIX, QualityGateFailed, dataset_gates
from vlamix.pipelines.spill import SPILL_DIR
from vlamix.pipelines.steps import AnnotationJob, BuildTask, Extracted
from vlamix.pipelines.tokenizer_cache import tokenizer_set_at
from vlamix.pipelines.web_steps import ItemBuildTask
from vlamix.pipelines.work_units import keyed_samples
from vlamix.schemas.quarantine import QuarantineRecord
from vlamix.shards.assign import shard_count
from vlamix.shards.layout import (
    REPORTS_DIR,
    STATS_PATH,
    TOKENIZERS_DIR,
    WORK_DIR,
)
from vlamix.shards.layout_owner import check_layout_owner, remove_unnamed_files
from vlamix.shards.store import Store, store_for
from vlamix.sources.config import RobotSource, SourcesFile, load_sources
from vlamix.transforms.chain import apply, build_chain, stats_chain
from vlamix.transforms.features import check_chain
from vlamix.transforms.stats import STATS_VERSION, DimStats, compute_stats

__all__ = ["STEPS", "IngestOptions", "run_ingest"]

log = logging.getLogger("vlamix.ingest")
STEPS = ("extract", "stats", "tokenizers", "build", "index")
# Above this many frames a dataset's statistics use a seeded subsample of frames (every step of each
# chunk is kept): 100,000 frames of 50-step chunks of 16 dims are ~320 MB, the stats step's memory bound.
STATS_MAX_FRAMES = 100_000


@dataclass(frozen=True)
class IngestOptions:
    sources: Path
    out: Path | str  # a folder, or a URL (s3://bucket/prefix, ...) that every worker can reach
    engine: Literal["beam", "ray"] = "beam"
    workers: int = 1
    seed: int = 0
    samples_per_shard: int = 1000
    shard_bytes: int | None = None  # when set, samples per shard follow from this target shard size
    # from extract: clear the layout first (also one made from other sources); with a later --only step:
    # rebuild every shard, even those an interrupted run with the same inputs finished
    fresh: bool = False
    stats_max_frames: int = STATS_MAX_FRAMES  # per dataset; above it statistics use a seeded subsample
    fast_fit_chunks: int = FAST_FIT_CHUNKS  # in all; above it FAST is fitted on a seeded subsample
    max_bad_share: float = (
        0.1  # per dataset: above this share of rows failing the quality gates, fail the job
    )
    only: str | None = None
    runner_args: list[str] = field(default_factory=list)
    tokenizers: Path | None = None  # reuse this tokenizer set instead of fitting one
    text_tokenizer: Path | None = None  # a Hugging Face tokenizer.json to use instead of training one
    ray_address: str | None = None  # join this Ray cluster (engine ray); local when unset

    @property
    def url(self) -> str:
        """The layout's location as the workers are handed it."""
        return self.store.url

    @property
    def store(self) -> Store:
        return store_for(str(self.out))

    def check(self) -> None:
        if self.only is not None and self.only not in STEPS:
            raise ValueError(f"--only {self.only!r}: steps are {', '.join(STEPS)}")
        if self.engine not in ("beam", "ray"):
            raise ValueError(f"--engine {self.engine!r}: engines are beam and ray")
        if self.samples_per_shard < 1:
            raise ValueError("--shard-samples must be at least 1")
        if not 0.0 <= self.max_bad_share <= 1.0:
            raise ValueError(f"--max-bad-share {self.max_bad_share}: give a share between 0 and 1")
        if self.stats_max_frames < 1 or self.fast_fit_chunks < 1:
            raise ValueError("--stats-max-frames and --fast-fit-chunks must be at least 1")
        if self.shard_bytes is not None and self.shard_bytes < 4096:
            raise ValueError(f"--shard-bytes {self.shard_bytes}: a shard needs at least 4096 bytes")


def _outcomes(
    opts: IngestOptions, src: RobotSource
) -> tuple[list[Extracted], list[QuarantineRecord], list[Extracted]]:
    return robot_outcomes(opts.store, src.name)


TINY_SPAN = 1e-4  # a dim whose q01..q99 span is below this blows up under quantile normalization


def _dataset_tensors(
    opts: IngestOptions, kept: list[Extracted]
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per kept episode, one at a time: native state, native actions and the frames whose chunks
    statistics see (all of them, or above `opts.stats_max_frames` frames a seeded subsample). Read from
    the frame Parquet with polars: no video is ever decoded for statistics."""
    total = sum(e.frames for e in kept)
    keep_p = min(1.0, opts.stats_max_frames / max(total, 1))
    for e in kept:
        with opts.store.open(e.frames_path) as f:
            df = pl.read_parquet(f, columns=["state", "action"])
        state = np.asarray(df["state"].to_list(), dtype=np.float32)
        action = np.asarray(df["action"].to_list(), dtype=np.float32)
        frames = np.arange(len(state))
        if keep_p < 1.0:  # seeded per episode: the same frames whatever the engine or order
            frames = frames[np.random.default_rng([opts.seed, e.episode]).random(len(frames)) < keep_p]
        yield state, action, frames


def _step_stats(opts: IngestOptions, sources: SourcesFile) -> None:
    for src in sources.datasets:
        kept, _, _ = _outcomes(opts, src)
        if not kept:
            log.warning("stats: %s has no episode left to compute statistics from", src.name)
            continue
        emb = sources.embodiment(src)
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
                log.warning("stats: %s: %s", src.name, msg)
                warnings.append(msg)
        doc = {
            "version": STATS_VERSION,
            "dataset": src.name,
            "embodiment": emb.name,
            "normalization": src.normalization,
            "frames": total,
            "subsampled": total > opts.stats_max_frames,
            "horizon": emb.chunk_horizon,
            "delta_dims": [d.name for d in emb.action if d.delta],
            "warnings": warnings,
            "state": {"names": [d.name for d in emb.state], **state_stats.to_json()},
            "actions": {"names": [d.name for d in emb.action], **action_stats.to_json()},
        }
        opts.store.write_json(STATS_PATH.format(dataset=src.name), doc)
        log.info("stats: %s over %d frames (%d chunk steps)", src.name, total, action_stats.count)


def _step_tokenizers(opts: IngestOptions, sources: SourcesFile) -> tuple[str, str]:
    if opts.tokenizers is not None:
        name, digest = reuse_tokenizer_set(opts.store, opts.tokenizers)
    else:
        name, digest = fit_tokenizer_set(
            opts.store, sources, opts.seed, opts.text_tokenizer, opts.fast_fit_chunks
        )
    opts.store.write_json(
        f"{WORK_DIR}/tokenizer_set.json", {"path": f"{TOKENIZERS_DIR}/{name}", "sha256": digest}
    )
    return name, digest


def _tokenizer_dir(opts: IngestOptions) -> str:
    """The tokenizer set as workers load it: a local folder, or its URL (fetched into a cache)."""
    return opts.store.url_of(opts.store.read_json(f"{WORK_DIR}/tokenizer_set.json")["path"])


def _load_stats(opts: IngestOptions, name: str) -> tuple[DimStats, DimStats]:
    doc = opts.store.read_json(STATS_PATH.format(dataset=name))
    return DimStats.from_json(doc["state"]), DimStats.from_json(doc["actions"])


def _plan(
    opts: IngestOptions, name: str, total: int, make: Callable[[int], list], **inputs
) -> list[BuildTask | ItemBuildTask]:
    """One dataset's build tasks, sized (samples per shard, or a byte target measured on a few built
    samples) and resumed: shards an interrupted run with the same inputs finished are skipped."""
    per_shard = opts.samples_per_shard
    if opts.shard_bytes is not None:
        probe = make(1)[0]
        entries = [e for _, (_, e, _) in itertools.islice(keyed_samples(probe), ESTIMATE_SAMPLES)]
        per_shard = samples_per_shard(opts.shard_bytes, entries)
        log.info("build: %s: %d samples per shard for %d-byte shards", name, per_shard, opts.shard_bytes)
    n = shard_count(total, per_shard)
    tok = opts.store.read_json(f"{WORK_DIR}/tokenizer_set.json")["sha256"]
    fp = fingerprint(dataset=name, seed=opts.seed, shards=n, tokenizers=tok, **inputs)
    done = prepare_dataset(opts.store, name, fp, n, opts.fresh)
    if len(done) == n:
        return []
    return [dataclasses.replace(t, skip=done) for t in make(n)]


def _step_build(opts: IngestOptions, sources: SourcesFile) -> None:
    from vlamix.pipelines.beam_jobs import beam_options, counters, run_build

    opts.store.rm(f"{WORK_DIR}/beam_build.json")
    tasks: list[BuildTask | ItemBuildTask] = []
    tok = _tokenizer_dir(opts)
    kept_by_robot: dict[str, dict[int, Extracted]] = {}
    for src in sources.datasets:
        kept, _, _ = _outcomes(opts, src)
        kept_by_robot[src.name] = {e.episode: e for e in kept}
        if not kept:
            prepare_dataset(opts.store, src.name, "", 0, True)
            continue
        state_stats, action_stats = _load_stats(opts, src.name)
        emb = sources.embodiment(src)
        check_chain(
            build_chain(emb, state_stats, action_stats, src.normalization, tokenizer_set_at(tok)), emb
        )  # before any job starts

        def robot_tasks(n, src=src, emb=emb, kept=kept, st=state_stats, at=action_stats):
            return [BuildTask(e, src, emb, st, at, opts.url, opts.seed, n, None, tok) for e in kept]

        tasks += _plan(
            opts,
            src.name,
            sum(e.samples for e in kept),
            robot_tasks,
            source=src,
            embodiment=emb,
            stats=opts.store.sha256(STATS_PATH.format(dataset=src.name)),
            units=[e.to_json() for e in kept],
        )
    for a in sources.annotations:
        spans = annotation_spans(opts.store, a.name)
        if not spans:
            prepare_dataset(opts.store, a.name, "", 0, True)
            continue
        robot = sources.robot(a.dataset)
        emb = sources.embodiment(robot)
        state_stats, action_stats = _load_stats(opts, robot.name)  # normalized like the robot's own samples

        def span_tasks(n, a=a, robot=robot, emb=emb, spans=spans, st=state_stats, at=action_stats):
            return [
                BuildTask(
                    kept_by_robot[robot.name][episode],
                    robot,
                    emb,
                    st,
                    at,
                    opts.url,
                    opts.seed,
                    n,
                    AnnotationJob(a.name, a.kind, group, a.stride),
                    tok,
                )
                for episode, group in spans.items()
            ]

        tasks += _plan(
            opts,
            a.name,
            sum(span_samples(s, a.stride) for group in spans.values() for s in group),
            span_tasks,
            source=a,
            robot=robot,
            embodiment=emb,
            stats=opts.store.sha256(STATS_PATH.format(dataset=robot.name)),
            units=[kept_by_robot[robot.name][ep].to_json() for ep in spans] + [repr(spans)],
        )
    for w in sources.web:
        kept, _, _ = web_outcomes(opts.store, w.name)
        if not kept:
            prepare_dataset(opts.store, w.name, "", 0, True)
            continue
        by_file: dict[str, set[int]] = {}
        for it in kept:
            by_file.setdefault(it.items_path, set()).add(it.item)

        def item_tasks(n, w=w, by_file=by_file):
            return [
                ItemBuildTask(w.name, path, frozenset(items), opts.url, opts.seed, n, tok)
                for path, items in sorted(by_file.items())
            ]

        tasks += _plan(opts, w.name, len(kept), item_tasks, source=w, units=[i.to_json() for i in kept])
    log.info("build: %d tasks", len(tasks))
    if tasks and opts.engine == "ray":
        from vlamix.pipelines import ray_jobs

        with ray_jobs.ray_session(opts.ray_address, opts.workers):
            engine = ray_jobs.run_build(tasks, opts.url)
        opts.store.write_json(f"{WORK_DIR}/ray_build.json", engine)
    elif tasks:
        result = run_build(tasks, opts.url, beam_options(opts.workers, opts.runner_args))
        opts.store.write_json(f"{WORK_DIR}/beam_build.json", counters(result))
    opts.store.rmtree(SPILL_DIR)


def _peak_rss_mib() -> float:
    """The driver's own peak resident memory so far (ru_maxrss is KiB on Linux; Beam's worker
    processes are not in it)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@contextlib.contextmanager
def _own_tempdir(engine: str) -> Iterator[None]:
    """Beam's DirectRunner and great_expectations leave empty folders in the temp dir after every run:
    a Beam ingest gives them, and its worker processes, a temp folder of its own, removed at the end.
    (Ray keeps its session logs in the temp dir, for `ray` tooling to find: left as they are.)"""
    if engine != "beam":
        yield
        return
    before = os.environ.get("TMPDIR"), tempfile.tempdir
    path = tempfile.mkdtemp(prefix="vlamix-ingest-")
    os.environ["TMPDIR"], tempfile.tempdir = path, path
    try:
        yield
    finally:
        if before[0] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = before[0]
        tempfile.tempdir = before[1]
        shutil.rmtree(path, ignore_errors=True)


def run_ingest(opts: IngestOptions) -> dict:
    """Run every step (or `opts.only`) and return the manifest (None of it when a single early step runs)."""
    opts.check()
    with _own_tempdir(opts.engine):
        return _run_ingest(opts)


def _run_ingest(opts: IngestOptions) -> dict:
    sources = load_sources(opts.sources, strict=False)
    if opts.store.local() is not None:
        opts.store.local().mkdir(parents=True, exist_ok=True)
    # a layout holding datasets these sources do not define is refused (they would stay beside the new manifest);
    # --fresh clears it first. Not before `--only build` and later steps: that would delete their inputs
    every = [s.name for s in (*sources.datasets, *sources.annotations, *sources.web)]
    check_layout_owner(opts.store, sources.path, every, fresh=opts.fresh and opts.only in (None, "extract"))
    remove_stray_temps(opts.store)
    sources_all = sources
    timings: dict[str, float] = {}
    peaks: dict[str, float] = {}
    manifest: dict = {}
    quality: dict = {}
    for step in STEPS:
        if opts.only and step != opts.only:
            continue
        start = time.perf_counter()
        log.info("step %s ...", step)
        if step != "extract" and sources is sources_all:  # the datasets the last extract could read
            sources = live_sources(sources, read_failures(opts.store))
        if step == "extract":
            sources = step_extract(opts, sources)
        elif step == "stats":
            _step_stats(opts, sources)
        elif step == "tokenizers":
            _step_tokenizers(opts, sources)
        elif step == "build":
            _step_build(opts, sources)
        else:
            failed = failed_entries(opts.store, sources_all, read_failures(opts.store))
            manifest = write_index_and_manifest(opts.store, sources, failed)
            for rel in remove_unnamed_files(opts.store, manifest):  # e.g. a tokenizer set fitted before
                log.info("index: removed %s, which the manifest does not name", rel)
            quality = _quality_gates(opts, sources)
        timings[step] = round(time.perf_counter() - start, 3)
        peaks[step] = _peak_rss_mib()
        log.info("step %s done in %.1f s", step, timings[step])
    report = {
        "steps_seconds": timings,
        "engine": opts.engine,
        "workers": opts.workers,
        "driver_peak_rss_mib": _peak_rss_mib(),
        "driver_peak_rss_mib_after_step": peaks,
    }
    for step in ("extract", "build"):
        rel = f"{WORK_DIR}/beam_{step}.json"
        if opts.store.exists(
            rel
        ):  # this run's Beam counters per dataset, to compare with the manifest's accounting
            report.setdefault("counters", {})[step] = opts.store.read_json(rel)
    if manifest:
        report["accounting"] = {k: v["accounting"] for k, v in manifest["datasets"].items()}
        report["quality"] = quality
    opts.store.write_json(f"{REPORTS_DIR}/ingest.json", report)
    if manifest.get("failed"):  # after the manifest and the reports: the others are built and accounted for
        raise DatasetsFailed(
            f"{len(manifest['failed'])} dataset(s) failed, the others were built ({opts.url}/manifest.json "
            "lists both under `failed` and `datasets`): "
            + "; ".join(f"{k}: {v['reason']}" for k, v in manifest["failed"].items())
            + _gate_message(quality, opts, " Also: ")
        )
    message = _gate_message(quality, opts, "")
    if message:  # after the manifest and the reports: everything that passed is written and accounted for
        raise QualityGateFailed(message)
    return manifest


def _gate_message(quality: dict, opts: IngestOptions, prefix: str) -> str:
    failed = {k: v for k, v in quality.items() if not v["success"]}
    if failed:
        return prefix + (
            "quality gate failed: "
            + "; ".join(
                f"{k}: {v['failed']} of {v['rows']} rows failed ({v['share']:.1%}, at most {opts.max_bad_share:.1%} allowed)"
                for k, v in failed.items()
            )
            + f". The failing rows are in {opts.url}/quarantine/<dataset>.jsonl, the report in {opts.url}/{DOCS_DIR}/index.html"
        )
    return ""


def _quality_gates(opts: IngestOptions, sources: SourcesFile) -> dict:
    """Per dataset (robot and web), one row per episode or item: did it pass the row-level gates."""
    outcomes = {}
    for src in sources.datasets:
        kept, quarantined, dups = robot_outcomes(opts.store, src.name)
        late = build_quarantine(opts.store, src.name)  # samples that failed the gate at build
        kept = [e for e in kept if e.episode not in {q.episode for q in late}]
        ids = [f"episode {e.episode}" for e in kept + dups]
        gated = [q for q in quarantined + late if q.reason.startswith(GATE_PREFIX)]
        outcomes[src.name] = pd.DataFrame(
            {
                "id": ids + [f"episode {q.episode}" for q in gated],
                "passed": [True] * len(ids) + [False] * len(gated),
            }
        )
    for w in sources.web:
        kept, quarantined, dups = web_outcomes(opts.store, w.name)
        ids = [f"item {i.item}" for i in kept + dups]
        gated = [q for q in quarantined if q.reason.startswith(GATE_PREFIX)]
        outcomes[w.name] = pd.DataFrame(
            {
                "id": ids + [f"item {q.item}" for q in gated],
                "passed": [True] * len(ids) + [False] * len(gated),
            }
        )
    local = opts.store.local()
    if local is not None:
        return dataset_gates(local / DOCS_DIR, outcomes, opts.max_bad_share)
    with tempfile.TemporaryDirectory() as tmp:  # Data Docs are written locally, then uploaded
        summary = dataset_gates(Path(tmp), outcomes, opts.max_bad_share)
        opts.store.rmtree(DOCS_DIR)
        opts.store.put_dir(tmp, DOCS_DIR)
    return summary
