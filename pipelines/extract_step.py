"""The extract step of `vlamix ingest`: every dataset lists its units (a dataset whose listing or
configuration fails is recorded as failed, and the others go on), the engine extracts them, then each
dataset does its driver-side part (annotations are read against the robot episodes written)."""

from __future__ import annotations

import logging

from vlamix.config import ConfigError
from vlamix.pipelines.datasets import kinds_of
from vlamix.pipelines.failed import live_sources, record_failures
from vlamix.pipelines.options import IngestOptions
from vlamix.pipelines.progress import known_total, step_progress
from vlamix.shards.workdir import WorkDir
from vlamix.sources.config import SourcesFile

__all__ = ["step_extract"]

log = logging.getLogger("vlamix.ingest")


def step_extract(opts: IngestOptions, sources: SourcesFile) -> SourcesFile:
    """Extract every dataset that can be listed; returns the sources without the ones that failed
    (their listing or configuration), which are recorded in work/failed.json with the reason."""
    from vlamix.pipelines.beam_jobs import beam_options, counters, run_extract

    opts.store.rm(WorkDir.engine_counters("beam", "extract"))
    units = []
    failures = dict(sources.problems)
    for kind in kinds_of(sources):
        if kind.name in failures:
            continue
        try:
            units += kind.extract_units(opts)
        except ConfigError as e:  # one bad source never costs the others: recorded, the rest built
            failures[kind.name] = _reason(e)
            log.error("extract: dataset %s failed: %s", kind.name, failures[kind.name])
    every = [s.name for s in (*sources.datasets, *sources.web)]
    if every and all(name in failures for name in every):  # nothing left to build: a plain config error
        raise ConfigError(
            "; ".join(
                r if r.startswith(str(sources.path)) else f"{sources.path}: dataset {n!r}: {r}"
                for n, r in failures.items()
            )
        )
    failed = record_failures(opts.store, sources, failures)
    sources = live_sources(sources, failed)
    log.info("extract: %d tasks from %d datasets", len(units), len(sources.datasets) + len(sources.web))
    with step_progress(opts, "extract", len(units), known_total(u.expected_frames for u in units)):
        if opts.engine == "ray":
            from vlamix.pipelines import ray_jobs

            with ray_jobs.ray_session(opts.ray_address, opts.workers):
                engine = ray_jobs.run_extract(units, opts.url, opts.errors)
            opts.store.write_json(WorkDir.engine_counters("ray", "extract"), engine)
        else:
            result = run_extract(units, opts.url, beam_options(opts.workers, opts.runner_args), opts.errors)
            opts.store.write_json(WorkDir.engine_counters("beam", "extract"), counters(result))
    for kind in kinds_of(sources):
        kind.after_extract(opts)
    return sources


def _reason(e: Exception) -> str:
    """An error as one line, without the sources file's path (the manifest names the dataset)."""
    return " ".join(str(e).split())
