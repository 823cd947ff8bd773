"""The ingest steps wired as Apache Beam pipelines (DirectRunner by default, any runner by flag)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from vlamix.pipelines.steps import BuildTask, ExtractTask, build_episode, extract_episode, write_shard_group
from vlamix.pipelines.web_steps import ItemBuildTask, build_items, extract_items
from vlamix.schemas.quarantine import BadRecord
from vlamix.shards.layout import WORK_DIR
from vlamix.sources.web import ItemBatch

__all__ = ["beam_options", "run_build", "run_extract"]

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
    """Good episodes to the main output, BadRecord ones to the `quarantine` dead-letter output; any other
    exception is a bug and fails the job."""

    def __init__(self):
        self.read = Metrics.counter(NAMESPACE, "episodes_read")
        self.extracted = Metrics.counter(NAMESPACE, "episodes_extracted")
        self.quarantined = Metrics.counter(NAMESPACE, "episodes_quarantined")
        self.frames = Metrics.counter(NAMESPACE, "frames_read")

    def process(self, task: ExtractTask | ItemBatch) -> Iterator:
        if isinstance(task, ItemBatch):  # web items: a batch at a time, each bad item quarantined alone
            good, bad = extract_items(task)
            Metrics.counter(NAMESPACE, "items_read").inc(len(task.items))
            Metrics.counter(NAMESPACE, "items_quarantined").inc(len(bad))
            yield from good
            for record in bad:
                yield beam.pvalue.TaggedOutput(QUARANTINE_TAG, record)
            return
        self.read.inc()
        try:
            result = extract_episode(task)
        except BadRecord as bad:
            self.quarantined.inc()
            self.frames.inc(bad.record.frames)
            yield beam.pvalue.TaggedOutput(QUARANTINE_TAG, bad.record)
            return
        self.extracted.inc()
        self.frames.inc(result.frames)
        yield result


def _write_lines(out: str, name: str, keyed: tuple[str, Iterable]) -> str:
    dataset, records = keyed
    path = Path(out) / WORK_DIR / name / f"{dataset}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = sorted(r.to_json() for r in records)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.replace(path)
    return str(path)


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
    datasets = sorted({t.dataset if isinstance(t, ItemBatch) else t.ref.dataset for t in tasks})
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
                lambda kv, name=tag: _write_lines(out, name, (kv[0], [r for r in kv[1] if r is not None]))
            )
        )
    result = p.run()
    result.wait_until_finish()
    return result


def _write_group(out: str, keyed) -> str:
    (dataset, shard), items = keyed
    result = write_shard_group(out, dataset, shard, list(items))
    Metrics.counter(NAMESPACE, "samples_written").inc(result.samples)
    Metrics.counter(NAMESPACE, "shards_written").inc()
    path = Path(out) / WORK_DIR / "shards" / dataset / f"{shard:06d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = {"path": result.path, "samples": result.samples, "bytes": result.bytes, "sha256": result.sha256}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(summary, sort_keys=True))
    tmp.replace(path)
    return result.path


def _samples(task: BuildTask | ItemBuildTask) -> Iterator:
    if isinstance(task, ItemBuildTask):
        dataset, samples = task.dataset, build_items(task)
    else:  # HL / VI datasets get their own shards
        dataset, samples = (
            (task.annotation.dataset if task.annotation else task.extracted.dataset),
            build_episode(task),
        )
    for shard, position, entry, index_row in samples:
        yield (dataset, shard), (position, entry, index_row)


def run_build(
    tasks: list[BuildTask], out: str, options: PipelineOptions
) -> beam.runners.runner.PipelineResult:
    """Kept episodes -> samples -> one group per shard -> tar + index part + `work/shards/<d>/<n>.json`."""
    p = beam.Pipeline(options=options)
    (
        p
        | "ListKeptEpisodes" >> beam.Create(tasks, reshuffle=True)
        | "BuildSamples" >> beam.FlatMap(_samples)
        | "GroupByShard" >> beam.GroupByKey()
        | "WriteShards" >> beam.Map(lambda kv: _write_group(out, kv))
    )
    result = p.run()
    result.wait_until_finish()
    return result
