"""Samples on their way to a shard. Each build unit writes, per shard it touches, one Arrow IPC file of
(position, key, members, index row) under `work/spill/<dataset>/<shard>/`; the shard writer merges one
shard's files. Engines shuffle only file names, so neither a worker nor the driver ever holds more than
one episode's or one shard's samples, whatever the size of the dataset."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.ipc as ipc

from vlamix.pipelines.units import PlacedSample
from vlamix.shards.store import store_for
from vlamix.shards.workdir import WorkDir
from vlamix.stage_clock import stage

__all__ = ["SPILL_SCHEMA", "read_spills", "write_spills"]

SPILL_SCHEMA = pa.schema(
    [
        ("position", pa.uint64()),  # the sample's place in its shard (a seeded 64-bit hash)
        ("key", pa.string()),
        ("names", pa.list_(pa.string())),  # member names, in the entry's order
        ("payloads", pa.list_(pa.large_binary())),
        ("index", pa.string()),  # the sample's index row as JSON
    ]
)

# one shard's item: (position, webdataset entry, index row)
ShardItem = tuple[int, dict, dict]


def _member_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def write_spills(
    out: str, dataset: str, unit: str, samples: Iterable[PlacedSample]
) -> list[tuple[tuple[str, int], str]]:
    """Write one build unit's samples (`unit` names it: unique within `dataset`) grouped by shard;
    returns ((dataset, shard), file) per shard touched. Each file is written atomically."""
    groups: dict[int, list[dict]] = defaultdict(list)
    for shard, position, sample in samples:  # the build runs in here (not a stage: no stage spans a yield)
        with stage("assembly"):
            entry = sample.members()
            names = [k for k in entry if k != "__key__"]
            groups[shard].append(
                {
                    "position": position,
                    "key": entry["__key__"],
                    "names": names,
                    "payloads": [_member_bytes(entry[k]) for k in names],
                    "index": json.dumps(sample.index_row(), sort_keys=True),
                }
            )
    written = []
    store = store_for(out)
    with stage("spill"):
        for shard, rows in sorted(groups.items()):
            rel = WorkDir.spill(dataset, shard, unit)
            with store.open_write(rel) as f, ipc.new_file(f, SPILL_SCHEMA) as writer:
                writer.write_table(pa.Table.from_pylist(rows, schema=SPILL_SCHEMA))
            written.append(((dataset, shard), rel))
    return written


def read_spills(out: str, files: Iterable[str]) -> list[ShardItem]:
    """One shard's (position, webdataset entry, index row) items from its spill files."""
    with stage("spill"):
        return _read_spills(out, files)


def _read_spills(out: str, files: Iterable[str]) -> list[ShardItem]:
    items = []
    store = store_for(out)
    for rel in sorted(files):
        with store.open(rel) as f, ipc.open_file(f) as reader:
            table = reader.read_all()
        for row in table.to_pylist():
            entry = {"__key__": row["key"], **dict(zip(row["names"], row["payloads"], strict=True))}
            items.append((row["position"], entry, json.loads(row["index"])))
    return items
