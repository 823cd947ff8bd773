"""What every kind's manifest entry shares: its shards (checked against what was built), its merged
index, its quarantine file, and file references with their sha256.

The index keeps each sample's byte range and the crc32 of those bytes (computed by the shard writer), so a
reader that fetches one sample by its byte range can tell a damaged or replaced shard from the sample it
indexed (`shards/random_access.read_sample`). Indexes without the column (older layouts) stay readable."""

from __future__ import annotations

import pyarrow.parquet as pq

from vlamix.pipelines.sample import INDEX_SCHEMA
from vlamix.schemas.quarantine import QuarantineRecord
from vlamix.shards.layout import INDEX_PATH, QUARANTINE_PATH
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir

__all__ = ["file_ref", "shard_entries", "write_quarantine"]


def file_ref(out: Store, rel: str) -> dict:
    return {"path": rel, "sha256": out.sha256(rel)}


def _merge_index(work: WorkDir, name: str) -> str:
    out, rel = work.store, INDEX_PATH.format(dataset=name)
    with out.open_write(rel) as f, pq.ParquetWriter(f, INDEX_SCHEMA) as writer:
        for part in work.index_parts(name):  # one shard's rows at a time: never a whole dataset in memory
            with out.open(part) as p:
                writer.write_table(pq.read_table(p, schema=INDEX_SCHEMA))
    return rel


def shard_entries(work: WorkDir, name: str, built: int, unit: str = "samples") -> dict:
    """`shards` (path, samples, bytes, sha256 each) and, when there are shards, the merged `index`, after
    checking that the shards hold the `built` samples the accounting counts."""
    shards = work.shard_summaries(name)
    written = sum(s["samples"] for s in shards)
    if written != built:
        raise RuntimeError(
            f"{name}: shards hold {written} samples, {built} {unit} were built: re-run `--only build`"
        )
    entry: dict = {"shards": [{k: s[k] for k in ("path", "samples", "bytes", "sha256")} for s in shards]}
    if shards:
        entry["index"] = file_ref(work.store, _merge_index(work, name))
    return entry


def write_quarantine(out: Store, name: str, records: list[QuarantineRecord]) -> str:
    rel = QUARANTINE_PATH.format(dataset=name)
    ordered = sorted(records, key=lambda q: (q.episode if q.episode is not None else -1, q.source_file))
    out.write_text(rel, "".join(q.to_json() + "\n" for q in ordered))
    return rel
