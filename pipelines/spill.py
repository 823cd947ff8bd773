"""Samples on their way to a shard. Each build task writes, per shard it touches, one Arrow IPC file of
(position, key, members, index row) under `work/spill/<dataset>/<shard>/`; the shard writer merges one
shard's files. Engines shuffle only file names, so neither a worker nor the driver ever holds more than
one episode's or one shard's samples, whatever the size of the dataset."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.ipc as ipc

from vlamix.shards.layout import WORK_DIR
from vlamix.shards.store import store_for

__all__ = ["SPILL_DIR", "read_spills", "spill_dir", "write_spills"]

SPILL_DIR = f"{WORK_DIR}/spill"
SPILL_SCHEMA = pa.schema(
    [
        ("position", pa.uint64()),  # the sample's place in its shard (a seeded 64-bit hash)
        ("key", pa.string()),
        ("names", pa.list_(pa.string())),  # member names, in the entry's order
        ("payloads", pa.list_(pa.large_binary())),
        ("index", pa.string()),  # the sample's index row as JSON
    ]
)


def spill_dir(dataset: str, shard: int) -> str:
    return f"{SPILL_DIR}/{dataset}/{shard:06d}"


def _member_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def write_spills(
    out: str, unit: str, samples: Iterable[tuple[tuple[str, int], tuple[int, dict, dict]]]
) -> list[tuple[tuple[str, int], str]]:
    """Write one build task's samples (`unit` names the task: unique within a dataset) grouped by shard;
    returns ((dataset, shard), file) per shard touched. Each file is written atomically."""
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for group, (position, entry, index_row) in samples:
        names = [k for k in entry if k != "__key__"]
        groups[group].append(
            {
                "position": position,
                "key": entry["__key__"],
                "names": names,
                "payloads": [_member_bytes(entry[k]) for k in names],
                "index": json.dumps(index_row, sort_keys=True),
            }
        )
    written = []
    for (dataset, shard), rows in sorted(groups.items()):
        rel = f"{spill_dir(dataset, shard)}/{unit}.arrow"
        with store_for(out).open_write(rel) as f, ipc.new_file(f, SPILL_SCHEMA) as writer:
            writer.write_table(pa.Table.from_pylist(rows, schema=SPILL_SCHEMA))
        written.append(((dataset, shard), rel))
    return written


def read_spills(out: str, files: Iterable[str]) -> list[tuple[int, dict, dict]]:
    """One shard's (position, webdataset entry, index row) items from its spill files."""
    items = []
    for rel in sorted(files):
        with store_for(out).open(rel) as f, ipc.open_file(f) as reader:
            table = reader.read_all()
        for row in table.to_pylist():
            entry = {"__key__": row["key"], **dict(zip(row["names"], row["payloads"], strict=True))}
            items.append((row["position"], entry, json.loads(row["index"])))
    return items
