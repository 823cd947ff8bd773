"""The per-element work of each step, shared by every engine: extract one task, key one task's samples
by shard, write one shard group, write one dataset's outcome lines. Engines only move these around.

Failure policy of extract: a reader's BadRecord quarantines its episode or item. Any other exception
inside one episode or item (a reader bug, or an input nobody foresaw) quarantines it too, with the reason
`unexpected <Type>: <message> (...)`, so one bad file never costs a run; with VLAMIX_DEBUG=1 (the CLI's
`--debug`) it propagates with its traceback instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator

from vlamix.pipelines.spill import read_spills, spill_dir, write_spills
from vlamix.pipelines.steps import (
    BuildTask,
    ExtractTask,
    build_episode,
    extract_episode,
    frames_file,
    write_shard_group,
)
from vlamix.pipelines.web_steps import ItemBuildTask, build_items, extract_items
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.shards.layout import WORK_DIR
from vlamix.shards.store import store_for
from vlamix.shards.writer import ShardResult
from vlamix.sources.web import ItemBatch, read_item

__all__ = [
    "DEBUG_ENV",
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


DEBUG_ENV = "VLAMIX_DEBUG"  # "1": exceptions other than BadRecord propagate instead of quarantining


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV) == "1"


def unexpected_reason(e: Exception) -> str:
    message = " ".join(str(e).split())
    return f"unexpected {type(e).__name__}: {message} (a reader bug? re-run with --debug for the traceback)"


def extract_task(task: ExtractTask | ItemBatch) -> tuple[list, list[QuarantineRecord]]:
    """(results, quarantined) of one extract task: an episode, or a batch of web items. BadRecord
    quarantines its episode or item; so does any other exception, unless VLAMIX_DEBUG=1."""
    if isinstance(task, ItemBatch):
        return _extract_batch(task)
    ref = task.ref
    try:
        return [extract_episode(task)], []
    except BadRecord as bad:
        return [], [bad.record]
    except Exception as e:
        if _debug():
            raise
        store_for(task.out).rm(frames_file(ref.dataset, ref.index))  # whatever it got to write
        record = QuarantineRecord(
            ref.dataset, ref.source_file, unexpected_reason(e), ref.index, frames=ref.frames
        )
        return [], [record]


def _extract_batch(batch: ItemBatch) -> tuple[list, list[QuarantineRecord]]:
    try:
        return extract_items(batch, _guarded_items(batch))
    except Exception as e:  # past the items (the gate, the write): every item of the batch
        if _debug():
            raise
        return [], [
            QuarantineRecord(batch.dataset, ref.source_file, unexpected_reason(e), item=ref.item)
            for ref in batch.items
        ]


def _guarded_items(batch: ItemBatch) -> Iterator[dict | BadRecord]:
    """read_items, one item at a time under the failure policy."""
    tables: dict = {}
    for ref in batch.items:
        try:
            yield read_item(batch, ref, tables)
        except Exception as e:
            if _debug():
                raise
            record = QuarantineRecord(batch.dataset, ref.source_file, unexpected_reason(e), item=ref.item)
            yield BadRecord(record)


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
