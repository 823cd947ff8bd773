"""The per-element work of each step, shared by every engine: run one extract unit, build one unit's
samples into spill files, merge one shard's spill files into the shard and its index part. Engines only
move these around (and never look at a unit's type: pipelines/units.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from vlamix.pipelines.options import ErrorPolicy
from vlamix.pipelines.progress import mark
from vlamix.pipelines.sample import INDEX_SCHEMA
from vlamix.pipelines.spill import ShardItem, read_spills, write_spills
from vlamix.pipelines.units import BuildUnit, Extraction, ExtractUnit
from vlamix.schemas.quarantine import BadRecord
from vlamix.shards.layout import shard_path
from vlamix.shards.store import store_for
from vlamix.shards.workdir import WorkDir
from vlamix.shards.writer import ShardResult, write_shard
from vlamix.stage_clock import since, stage, totals

__all__ = ["extract_unit", "spill_unit", "write_shard_group", "write_spilled_group"]


def extract_unit(unit: ExtractUnit, policy: ErrorPolicy) -> Extraction:
    before, t0 = totals(), time.perf_counter()
    extraction = unit.extract(policy)
    done = extraction.counters.get("frames_read", extraction.counters.get("items_read", 0))
    mark(unit.out, "extract", unit.name, done, since(before), time.perf_counter() - t0)
    return extraction


def spill_unit(out: str, unit: BuildUnit) -> list[tuple[tuple[str, int], str]]:
    """Build one unit's samples into spill files, one per shard touched: ((dataset, shard), file) each.
    A unit whose samples fail the quality gate spills nothing and leaves its quarantine record in
    `work/build_quarantine/` for the index step."""
    built, before, t0 = 0, totals(), time.perf_counter()

    def counted():
        nonlocal built
        for placed in unit.samples():
            built += 1
            yield placed

    try:
        return write_spills(out, unit.dataset, unit.unit, counted())
    except BadRecord as bad:
        WorkDir.at(out).write_build_quarantine(unit.unit, bad.record)
        return []
    finally:
        mark(out, "build", f"{unit.dataset}-{unit.unit}", built, since(before), time.perf_counter() - t0)


def write_spilled_group(out: str, dataset: str, shard: int, files: Iterable[str]) -> ShardResult:
    """Merge one shard's spill files into the shard, then drop them."""
    before, t0 = totals(), time.perf_counter()
    result = write_shard_group(out, dataset, shard, read_spills(out, files))
    with stage("spill"):
        store_for(out).rmtree(WorkDir.spill(dataset, shard))
    seconds = time.perf_counter() - t0
    mark(out, "build", f"{dataset}-shard-{shard:05d}", 0, since(before), seconds, unit=False)
    return result


def write_shard_group(out: str, dataset: str, shard: int, items: list[ShardItem]) -> ShardResult:
    """Write one shard from its (position, entry, index row) items, ordered by position, its part of the
    index (one row per sample with the sample's byte range in the tar), then its summary: a shard is
    finished when its summary exists (pipelines/build_plan.py resumes from there)."""
    with stage("tar write"):
        return _write_shard_group(out, dataset, shard, items)


def _write_shard_group(out: str, dataset: str, shard: int, items: list[ShardItem]) -> ShardResult:
    items = sorted(items, key=lambda it: (it[0], it[1]["__key__"]))
    store, rel = store_for(out), shard_path(dataset, shard)
    result = write_shard(store, rel, (entry for _, entry, _ in items))
    rows = []
    for (key, offset, length, crc), (_, _, meta) in zip(result.offsets, items, strict=True):
        rows.append({**meta, "key": key, "shard": rel, "offset": offset, "length": length, "crc32": crc})
    with store.open_write(WorkDir.index_part(dataset, shard)) as f:
        pq.write_table(pa.Table.from_pylist(rows, schema=INDEX_SCHEMA), f)
    summary = {"path": result.path, "samples": result.samples, "bytes": result.bytes, "sha256": result.sha256}
    store.write_text(WorkDir.shard_summary(dataset, shard), json.dumps(summary, sort_keys=True))
    return result
