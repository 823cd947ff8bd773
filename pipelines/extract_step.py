"""The extract step of `vlamix ingest`: list every dataset (a dataset whose listing or configuration
fails is recorded as failed, and the others go on), then run the engine over the episodes and item
batches, and read the annotations against what was extracted."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from vlamix.config import ConfigError
from vlamix.pipelines.annotations import extract_annotations
from vlamix.pipelines.failed import live_sources, record_failures
from vlamix.pipelines.outcomes import write_jsonl
from vlamix.pipelines.steps import ExtractTask
from vlamix.shards.layout import WORK_DIR
from vlamix.sources.config import SourcesFile
from vlamix.sources.readers import reader_for
from vlamix.sources.web import list_items

if TYPE_CHECKING:
    from vlamix.pipelines.ingest import IngestOptions

__all__ = ["step_extract"]

log = logging.getLogger("vlamix.ingest")


def _listed(sources: SourcesFile, name: str, listing, *args) -> list:
    """The work of one dataset; a dataset whose path cannot be listed is an error naming the sources
    file and the dataset, raised before any job starts."""
    try:
        return list(listing(*args))
    except (ValueError, OSError) as e:  # ConfigError is a ValueError
        raise ConfigError(f"{sources.path}: dataset {name!r}: {e}") from e


def step_extract(opts: IngestOptions, sources: SourcesFile) -> SourcesFile:
    """Extract every dataset that can be listed; returns the sources without the ones that failed
    (their listing or configuration), which are recorded in work/failed.json with the reason."""
    from vlamix.pipelines.beam_jobs import beam_options, counters, run_extract

    opts.store.rm(f"{WORK_DIR}/beam_extract.json")

    tasks = []
    failures = dict(sources.problems)
    for src in sources.datasets:
        if src.name in failures:
            continue
        try:
            emb = sources.embodiment(src)
            refs = _listed(sources, src.name, reader_for(src.format).list_episodes, sources, src)
        except ConfigError as e:  # one bad source never costs the others: recorded, the rest built
            failures[src.name] = _reason(e)
            log.error("extract: dataset %s failed: %s", src.name, failures[src.name])
            continue
        tasks += [ExtractTask(ref, src, emb, opts.url) for ref in refs]
        opts.store.rmtree(f"{WORK_DIR}/frames/{src.name}")
    for w in sources.web:
        try:
            batches = _listed(sources, w.name, list_items, sources, w, opts.url)
        except ConfigError as e:
            failures[w.name] = _reason(e)
            log.error("extract: dataset %s failed: %s", w.name, failures[w.name])
            continue
        opts.store.rmtree(f"{WORK_DIR}/items/{w.name}")
        tasks += batches
    for a in sources.annotations:  # an annotation file that is not there fails its dataset alone
        path = sources.root / a.path
        if not path.is_file():
            failures[a.name] = f"annotation file {a.path!r} is missing (or not a file)"
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
    log.info("extract: %d tasks from %d datasets", len(tasks), len(sources.datasets) + len(sources.web))
    if opts.engine == "ray":
        from vlamix.pipelines import ray_jobs

        with ray_jobs.ray_session(opts.ray_address, opts.workers):
            engine = ray_jobs.run_extract(tasks, opts.url)
        opts.store.write_json(f"{WORK_DIR}/ray_extract.json", engine)
    else:
        result = run_extract(tasks, opts.url, beam_options(opts.workers, opts.runner_args))
        opts.store.write_json(f"{WORK_DIR}/beam_extract.json", counters(result))
    for name in [s.name for s in sources.datasets] + [w.name for w in sources.web]:
        for kind in (
            "extracted",
            "quarantined",
        ):  # a dataset with nothing to read still gets its (empty) files
            rel = f"{WORK_DIR}/{kind}/{name}.jsonl"
            if not opts.store.exists(rel):
                write_jsonl(opts.store, rel, [])
    extract_annotations(opts.store, sources)
    return sources


def _reason(e: Exception) -> str:
    """An error as one line, without the sources file's path (the manifest names the dataset)."""
    return " ".join(str(e).split())
