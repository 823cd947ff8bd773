"""The per-element work of each step, shared by every engine: extract one task, key one task's samples
by shard, write one shard group, write one dataset's outcome lines. Engines only move these around."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from vlamix.pipelines.spill import read_spills, spill_dir, write_spills
from vlamix.pipelines.steps import BuildTask, ExtractTask, build_episode, extract_episode, write_shard_group
from vlamix.pipelines.web_steps import ItemBuildTask, build_items, extract_items
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.shards.layout import WORK_DIR
from vlamix.shards.store import store_for
from vlamix.shards.writer import ShardResult
from vlamix.sources.web import ItemBatch

__all__ = [
    "extract_task",
    "keyed_samples",
    "spill_task",
    "task_dataset",
    "write_group",
    "write_outcome_lines",
    "write_spilled_group",
]


def task_dataset(task: ExtractTask | ItemBatch) -> str:
    return task.dataset if isinstance(task, ItemBatch) else task.ref.dataset


def extract_task(task: ExtractTask | ItemBatch) -> tuple[list, list[QuarantineRecord]]:
    """(results, quarantined) of one extract task: an episode, or a batch of web items. Only BadRecord
    is caught; anything else is a bug and fails the job."""
    if isinstance(task, ItemBatch):
        return extract_items(task)
    try:
        return [extract_episode(task)], []
    except BadRecord as bad:
        return [], [bad.record]


def keyed_samples(
    task: BuildTask | ItemBuildTask,
) -> Iterator[tuple[tuple[str, int], tuple[int, dict, dict]]]:
    """((dataset, shard), (position, webdataset entry, index row)) for every sample of one build task."""
    if isinstance(task, ItemBuildTask):
        dataset, samples = task.dataset, build_items(task)
    else:  # HL / VI datasets get their own shards
        dataset, samples = (
            (task.annotation.dataset if task.annotation else task.extracted.dataset),
            build_episode(task),
        )
    for shard, position, entry, index_row in samples:
        yield (dataset, shard), (position, entry, index_row)


BUILD_QUARANTINE = f"{WORK_DIR}/build_quarantine"  # read back by outcomes.build_quarantine


def spill_task(out: str, task: BuildTask | ItemBuildTask) -> list[tuple[tuple[str, int], str]]:
    """Build one task's samples into spill files, one per shard touched: ((dataset, shard), file) each.
    An episode whose samples fail the quality gate spills nothing and leaves its quarantine record in
    `work/build_quarantine/<dataset>/<task>.json` for the index step."""
    try:
        return write_spills(out, task.unit, keyed_samples(task))
    except BadRecord as bad:
        q = bad.record
        store_for(out).write_text(f"{BUILD_QUARANTINE}/{q.dataset}/{task.unit}.json", q.to_json())
        return []


def write_spilled_group(out: str, dataset: str, shard: int, files: Iterable[str]) -> ShardResult:
    """Merge one shard's spill files into the shard, then drop them."""
    result = write_group(out, dataset, shard, read_spills(out, files))
    store_for(out).rmtree(spill_dir(dataset, shard))
    return result


def write_group(out: str, dataset: str, shard: int, items: Iterable[tuple[int, dict, dict]]) -> ShardResult:
    """Write one shard and its `work/shards/<dataset>/<shard>.json` summary."""
    result = write_shard_group(out, dataset, shard, list(items))
    summary = {"path": result.path, "samples": result.samples, "bytes": result.bytes, "sha256": result.sha256}
    store_for(out).write_text(
        f"{WORK_DIR}/shards/{dataset}/{shard:06d}.json", json.dumps(summary, sort_keys=True)
    )
    return result


def write_outcome_lines(out: str, name: str, dataset: str, records: Iterable) -> str:
    """`work/<name>/<dataset>.jsonl`: one JSON line per record, sorted (engine order never shows)."""
    rel = f"{WORK_DIR}/{name}/{dataset}.jsonl"
    lines = sorted(r.to_json() for r in records)
    store_for(out).write_text(rel, "".join(line + "\n" for line in lines))
    return rel
