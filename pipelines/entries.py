"""What every kind's manifest entry shares: its shards (checked against what was built), its merged
index, its quarantine file, and file references with their sha256.

The index keeps each sample's byte range and the crc32 of those bytes (computed by the shard writer), so a
reader that fetches one sample by its byte range can tell a damaged or replaced shard from the sample it
indexed (`shards/random_access.read_sample`). Indexes without the column (older layouts) stay readable.

Robot and HL / VI entries list their `environments` (docs/design.md §24): each environment with the
number of distinct episodes whose samples are in the index, counted while the index parts are merged."""

from __future__ import annotations

from collections import defaultdict

import pyarrow.parquet as pq

from vlamix.pipelines.sample import INDEX_SCHEMA
from vlamix.schemas.quarantine import QuarantineRecord
from vlamix.shards.layout import INDEX_PATH, QUARANTINE_PATH
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir

__all__ = ["file_ref", "shard_entries", "write_quarantine"]


def file_ref(out: Store, rel: str) -> dict:
    return {"path": rel, "sha256": out.sha256(rel)}


def _merge_index(work: WorkDir, name: str) -> tuple[str, dict[str, int]]:
    """The merged index's path, and the episodes per environment in it."""
    out, rel = work.store, INDEX_PATH.format(dataset=name)
    episodes: defaultdict[str, set[int]] = defaultdict(set)
    with out.open_write(rel) as f, pq.ParquetWriter(f, INDEX_SCHEMA) as writer:
        for part in work.index_parts(name):  # one shard's rows at a time: never a whole dataset in memory
            with out.open(part) as p:
                table = pq.read_table(p, schema=INDEX_SCHEMA)
            writer.write_table(table)
            columns = table.select(["environment", "episode"]).to_pydict()
            for env, episode in zip(columns["environment"], columns["episode"], strict=True):
                if env is not None:
                    episodes[env].add(episode)
    return rel, {env: len(eps) for env, eps in sorted(episodes.items())}


def shard_entries(
    work: WorkDir, name: str, built: int, unit: str = "samples", environments: bool = False
) -> dict:
    """`shards` (path, samples, bytes, sha256 each) and, when there are shards, the merged `index`, after
    checking that the shards hold the `built` samples the accounting counts; with `environments` (robot,
    HL and VI datasets), `{environment: episodes}` (empty when the sources file names none)."""
    shards = work.shard_summaries(name)
    written = sum(s["samples"] for s in shards)
    if written != built:
        raise RuntimeError(
            f"{name}: shards hold {written} samples, {built} {unit} were built: re-run `--only build`"
        )
    entry: dict = {"shards": [{k: s[k] for k in ("path", "samples", "bytes", "sha256")} for s in shards]}
    found: dict[str, int] = {}
    if shards:
        rel, found = _merge_index(work, name)
        entry["index"] = file_ref(work.store, rel)
    if environments:
        entry["environments"] = found
    return entry


def write_quarantine(out: Store, name: str, records: list[QuarantineRecord]) -> str:
    rel = QUARANTINE_PATH.format(dataset=name)
    ordered = sorted(records, key=lambda q: (q.episode if q.episode is not None else -1, q.source_file))
    out.write_text(rel, "".join(q.to_json() + "\n" for q in ordered))
    return rel
