"""The ingest steps wired as Apache Beam pipelines (DirectRunner by default, any runner by flag)."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from vlamix.pipelines.options import ErrorPolicy
from vlamix.pipelines.units import BuildUnit, ExtractUnit, SummaryUnit
from vlamix.pipelines.work_units import extract_unit, spill_unit, write_spilled_group
from vlamix.shards.workdir import WorkDir

__all__ = ["beam_options", "counters", "run_build", "run_extract", "run_units"]

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


class ExtractUnits(beam.DoFn):
    """Written units to the main output, quarantined ones to the `quarantine` dead-letter output; each
    unit's counters go to Beam's metrics, per dataset (to compare with the manifest's accounting)."""

    def __init__(self, policy: ErrorPolicy):
        self.policy = policy

    def process(self, unit: ExtractUnit) -> Iterator:
        extraction = extract_unit(unit, self.policy)
        ns = f"{NAMESPACE}.{unit.dataset}"
        for name, value in extraction.counters.items():
            Metrics.counter(ns, name).inc(value)
        yield from extraction.results
        for record in extraction.quarantined:
            yield beam.pvalue.TaggedOutput(QUARANTINE_TAG, record)


def run_extract(
    tasks: list[ExtractUnit], out: str, options: PipelineOptions, policy: ErrorPolicy = "quarantine"
) -> beam.runners.runner.PipelineResult:
    """Raw episodes and item batches -> frame / item Parquet; per dataset, its outcome lines (WorkDir)."""
    p = beam.Pipeline(options=options)
    results = (
        p
        | "ListEpisodes" >> beam.Create(tasks, reshuffle=True)
        | "ExtractEpisodes" >> beam.ParDo(ExtractUnits(policy)).with_outputs(QUARANTINE_TAG, main="extracted")
    )
    datasets = sorted({t.dataset for t in tasks})
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
                lambda kv, name=tag: WorkDir.at(out).write_outcomes(
                    name, kv[0], [r for r in kv[1] if r is not None]
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
    tasks: list[BuildUnit], out: str, options: PipelineOptions
) -> beam.runners.runner.PipelineResult:
    """Kept episodes -> samples spilled per shard -> one group of file names per shard -> tar + index
    part + summary. Only file names go through the shuffle."""
    p = beam.Pipeline(options=options)
    (
        p
        | "ListBuildTasks" >> beam.Create(tasks, reshuffle=True)
        | "BuildAndSpillSamples" >> beam.FlatMap(lambda unit: spill_unit(out, unit))
        | "GroupByShard" >> beam.GroupByKey()
        | "WriteShards" >> beam.Map(lambda kv: _write_group(out, kv))
    )
    result = p.run()
    result.wait_until_finish()
    return result


def run_units(tasks: list[SummaryUnit], options: PipelineOptions) -> beam.runners.runner.PipelineResult:
    """Units that each write their own summary file (the stats step's passes); nothing is collected."""
    p = beam.Pipeline(options=options)
    _ = (
        p
        | "ListUnits" >> beam.Create(tasks, reshuffle=True)
        | "RunUnits" >> beam.Map(lambda unit: unit.run())
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
