"""The build step: every dataset's build units (planned and resumed per dataset), run by the engine:
samples spilled per shard, then one shard and its index part per group."""

from __future__ import annotations

import logging

from vlamix.pipelines.datasets import kinds_of
from vlamix.pipelines.options import IngestOptions
from vlamix.pipelines.progress import known_total, step_progress
from vlamix.shards.workdir import WorkDir
from vlamix.sources.config import SourcesFile

__all__ = ["step_build"]

log = logging.getLogger("vlamix.ingest")


def step_build(opts: IngestOptions, sources: SourcesFile) -> None:
    from vlamix.pipelines.beam_jobs import beam_options, counters, run_build

    opts.store.rm(WorkDir.engine_counters("beam", "build"))
    units = [u for kind in kinds_of(sources) for u in kind.build_units(opts)]
    log.info("build: %d tasks", len(units))
    with step_progress(opts, "build", len(units), known_total(u.expected_frames for u in units)):
        if units and opts.engine == "ray":
            from vlamix.pipelines import ray_jobs

            with ray_jobs.ray_session(opts.ray_address, opts.workers):
                engine = ray_jobs.run_build(units, opts.url)
            opts.store.write_json(WorkDir.engine_counters("ray", "build"), engine)
        elif units:
            result = run_build(units, opts.url, beam_options(opts.workers, opts.runner_args))
            opts.store.write_json(WorkDir.engine_counters("beam", "build"), counters(result))
    opts.store.rmtree(WorkDir.SPILL)
