"""The ingest steps wired as Apache Beam pipelines (DirectRunner by default, any runner by flag)."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from vlamix.pipelines.steps import BuildTask, ExtractTask
from vlamix.pipelines.work_units import (
    extract_task,
    spill_task,
    task_dataset,
    write_outcome_lines,
    write_spilled_group,
)
from vlamix.sources.web import ItemBatch

__all__ = ["beam_options", "counters", "run_build", "run_extract"]

NAMESPACE = "vlamix"
QUARANTINE_TAG = "quarantine"


def beam_options(workers: int, extra: list[str]) -> PipelineOptions:
    """DirectRunner with `workers` processes unless `extra` names another runner (its options pass through)."""
    args = list(extra)
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=DirectRunner")
        if workers > 1:
            args += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
        args.append("--default_sdk_harness_log_level=WARNING")
    return PipelineOptions(args)


class ExtractEpisode(beam.DoFn):
    """Good episodes to the main output, quarantined ones to the `quarantine` dead-letter output. A reader's
    unexpected exception quarantines its episode or item too, with the exception named (work_units.py),
    unless VLAMIX_DEBUG=1 (`vlamix --debug`), where it fails the job with its traceback."""

    def process(self, task: ExtractTask | ItemBatch) -> Iterator:
        results, bad = extract_task(task)
        ns = f"{NAMESPACE}.{task_dataset(task)}"  # per dataset, to compare with the manifest's accounting
        if isinstance(task, ItemBatch):
            Metrics.counter(ns, "items_read").inc(len(task.items))
            Metrics.counter(ns, "items_quarantined").inc(len(bad))
        else:
            Metrics.counter(ns, "episodes_read").inc()
            Metrics.counter(ns, "episodes_quarantined" if bad else "episodes_extracted").inc()
            Metrics.counter(ns, "frames_read").inc(
                sum(r.frames for r in results) + sum(q.frames for q in bad)
            )
        yield from results
        for record in bad:
            yield beam.pvalue.TaggedOutput(QUARANTINE_TAG, record)


def run_extract(
    tasks: list[ExtractTask], out: str, options: PipelineOptions
) -> beam.runners.runner.PipelineResult:
    """Raw episodes -> frame Parquet; per dataset, `work/extracted/<d>.jsonl` and `work/quarantined/<d>.jsonl`."""
    p = beam.Pipeline(options=options)
    results = (
        p
        | "ListEpisodes" >> beam.Create(tasks, reshuffle=True)
        | "ExtractEpisodes" >> beam.ParDo(ExtractEpisode()).with_outputs(QUARANTINE_TAG, main="extracted")
    )
    datasets = sorted({task_dataset(t) for t in tasks})
    for tag, coll in (("extracted", results.extracted), ("quarantined", results[QUARANTINE_TAG])):
        # Every dataset gets a file, also when it has no record of this kind.
        empty = p | f"Datasets{tag.title()}" >> beam.Create([(d, None) for d in datasets])
        keyed = coll | f"Key{tag.title()}" >> beam.Map(lambda r: (r.dataset, r))
        (
            (keyed, empty)
            | f"Merge{tag.title()}" >> beam.Flatten()
            | f"Group{tag.title()}" >> beam.GroupByKey()
            | f"Write{tag.title()}"
            >> beam.Map(
                lambda kv, name=tag: write_outcome_lines(
                    out, name, kv[0], [r for r in kv[1] if r is not None]
                )
            )
        )
    result = p.run()
    result.wait_until_finish()
    return result


def _write_group(out: str, keyed) -> str:
    (dataset, shard), files = keyed
    result = write_spilled_group(out, dataset, shard, files)
    Metrics.counter(f"{NAMESPACE}.{dataset}", "samples_written").inc(result.samples)
    Metrics.counter(f"{NAMESPACE}.{dataset}", "shards_written").inc()
    return result.path


def run_build(
    tasks: list[BuildTask], out: str, options: PipelineOptions
) -> beam.runners.runner.PipelineResult:
    """Kept episodes -> samples spilled per shard -> one group of file names per shard -> tar + index
    part + `work/shards/<d>/<n>.json`. Only file names go through the shuffle."""
    p = beam.Pipeline(options=options)
    (
        p
        | "ListBuildTasks" >> beam.Create(tasks, reshuffle=True)
        | "BuildAndSpillSamples" >> beam.FlatMap(lambda task: spill_task(out, task))
        | "GroupByShard" >> beam.GroupByKey()
        | "WriteShards" >> beam.Map(lambda kv: _write_group(out, kv))
    )
    result = p.run()
    result.wait_until_finish()
    return result


def counters(result: beam.runners.runner.PipelineResult) -> dict[str, dict[str, int]]:
    """The job's committed counters as {dataset: {name: value}} (the manifest's accounting must agree)."""
    out: dict[str, dict[str, int]] = {}
    for c in result.metrics().query()["counters"]:
        ns = c.key.metric.namespace
        if ns.startswith(NAMESPACE + "."):
            dataset = ns[len(NAMESPACE) + 1 :]
            value = c.committed if c.committed is not None else c.attempted
            out.setdefault(dataset, {})[c.key.metric.name] = (
                out.get(dataset, {}).get(c.key.metric.name, 0) + value
            )
    return {d: dict(sorted(v.items())) for d, v in sorted(out.items())}
