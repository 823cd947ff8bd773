"""`vlamix ingest`: extract -> stats -> tokenizers -> build -> index + manifest, on the chosen engine.

Each step reads what the previous one left in the layout's `work/` folder (shards/workdir.py), so
`--only STEP` re-runs one step. Each step loops over the datasets' kinds (pipelines/kinds.py); the
engines only run the units the kinds make (pipelines/units.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator

from vlamix.pipelines.build_plan import remove_stray_temps
from vlamix.pipelines.build_step import step_build
from vlamix.pipelines.extract_step import step_extract
from vlamix.pipelines.failed import DatasetsFailed, failed_entries, live_sources
from vlamix.pipelines.fit_tokenizers import step_tokenizers
from vlamix.pipelines.gates_step import gate_message, quality_gates
from vlamix.pipelines.index_step import write_index_and_manifest
from vlamix.pipelines.options import STEPS, IngestOptions
from vlamix.pipelines.progress import REPORT, report_for, step_progress
from vlamix.pipelines.quality import QualityGateFailed
from vlamix.pipelines.stats_step import step_stats
from vlamix.shards.layout_owner import check_layout_owner, remove_unnamed_files
from vlamix.sources.config import load_sources

__all__ = ["STEPS", "IngestOptions", "run_ingest"]

log = logging.getLogger("vlamix.ingest")


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
    sources_all = load_sources(opts.sources, strict=False)
    work = opts.work
    if opts.store.local() is not None:
        opts.store.local().mkdir(parents=True, exist_ok=True)
    # a layout holding datasets these sources do not define is refused (they would stay beside the new manifest);
    # --fresh clears it first. Not before `--only build` and later steps: that would delete their inputs
    every = [s.name for s in (*sources_all.datasets, *sources_all.annotations, *sources_all.web)]
    check_layout_owner(
        opts.store, sources_all.path, every, fresh=opts.fresh and opts.only in (None, "extract")
    )
    remove_stray_temps(opts.store)
    progress = report_for(opts.store, fresh=True)
    sources = sources_all
    timings: dict[str, float] = {}
    peaks: dict[str, float] = {}
    manifest: dict = {}
    quality: dict = {}
    for step in STEPS:
        if opts.only and step != opts.only:
            continue
        start = time.perf_counter()
        log.info("step %s ...", step)
        try:
            if step != "extract" and sources is sources_all:  # the datasets the last extract could read
                sources = live_sources(sources, work.failed())
            if step == "extract":
                sources = step_extract(opts, sources)
            elif step == "stats":
                step_stats(opts, sources)
            elif step == "build":
                step_build(opts, sources)
            elif step == "tokenizers":
                with step_progress(opts, step, 0):  # the driver's own: start, end, duration
                    step_tokenizers(opts, sources)
            else:
                with step_progress(opts, step, 0):
                    failed = failed_entries(opts.store, sources_all, work.failed())
                    manifest = write_index_and_manifest(work, sources, failed)
                    for rel in remove_unnamed_files(opts.store, manifest):  # e.g. an earlier tokenizer set
                        log.info("index: removed %s, which the manifest does not name", rel)
                    quality = quality_gates(opts, sources)
        except BaseException as e:  # a monitor of reports/ingest.json sees where the ingest stopped
            progress.failed(step, e)
            raise
        timings[step] = round(time.perf_counter() - start, 3)
        peaks[step] = _peak_rss_mib()
        log.info("step %s done in %.1f s", step, timings[step])
    report = {
        "running": False,
        "progress": progress.steps,
        "steps_seconds": timings,
        "engine": opts.engine,
        "workers": opts.workers,
        "driver_peak_rss_mib": _peak_rss_mib(),
        "driver_peak_rss_mib_after_step": peaks,
    }
    counters = work.engine_reports()  # this run's Beam counters per dataset, beside the manifest's accounting
    if counters:
        report["counters"] = counters
    if manifest:
        report["accounting"] = {k: v["accounting"] for k, v in manifest["datasets"].items()}
        report["quality"] = quality
    opts.store.write_json(REPORT, report)
    if manifest.get("failed"):  # after the manifest and the reports: the others are built and accounted for
        raise DatasetsFailed(
            f"{len(manifest['failed'])} dataset(s) failed, the others were built ({opts.url}/manifest.json "
            "lists both under `failed` and `datasets`): "
            + "; ".join(f"{k}: {v['reason']}" for k, v in manifest["failed"].items())
            + gate_message(quality, opts, " Also: ")
        )
    message = gate_message(quality, opts, "")
    if message:  # after the manifest and the reports: everything that passed is written and accounted for
        raise QualityGateFailed(message)
    return manifest
