"""Web (WD) items through the steps: extract a batch of items to item Parquet, build one sample per item."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from vlamix.pipelines.quality import failures
from vlamix.pipelines.tokenizer_cache import tokenizer_set_at
from vlamix.schemas.embodiment import CAMERA_SLOTS
from vlamix.schemas.expectations import item_expectations, item_table
from vlamix.schemas.frame import image_column
from vlamix.schemas.item import ITEM
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.schemas.sample import SAMPLE
from vlamix.shards.assign import place
from vlamix.shards.layout import WORK_DIR
from vlamix.shards.members import to_members
from vlamix.shards.store import store_for
from vlamix.sources.web import ItemBatch, read_items
from vlamix.transforms.image import black_jpeg
from vlamix.transforms.tokenize import TokenizeSample

__all__ = ["ItemBuildTask", "ItemExtracted", "build_items", "extract_items"]


@dataclass(frozen=True)
class ItemExtracted:
    dataset: str
    item: int
    turns: int
    content_hash: str
    items_path: str  # relative to the layout root
    # what the reader left out or changed by rule (sources/web.py COUNTERS: crowd regions, boxes clipped,
    # dropped or rescaled, empty texts), summed into the manifest's accounting
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def extract_items(
    batch: ItemBatch, records: Iterable[dict | BadRecord] | None = None
) -> tuple[list[ItemExtracted], list[QuarantineRecord]]:
    """Item Parquet of a batch and its quarantined items; `records` are the batch's items as read (by
    default read_items(batch); the engines pass them read under their failure policy)."""
    good, bad = [], []
    for rec in read_items(batch) if records is None else records:
        (bad.append(rec.record) if isinstance(rec, BadRecord) else good.append(rec))
    failed = {}
    for f in failures(item_table(good), "items_WD", item_expectations()):
        failed.setdefault(f.row, f)  # the quality gate: the first failure of each item names it
    for row, f in sorted(failed.items()):
        it = good[row]
        bad.append(
            QuarantineRecord(batch.dataset, it["source_file"], f.reason(), None, it["item"], None, f.column)
        )
    good = [it for i, it in enumerate(good) if i not in failed]
    rel = f"{WORK_DIR}/items/{batch.dataset}/{batch.batch:06d}.parquet"
    if good:
        with store_for(batch.out).open_write(rel) as f:
            pq.write_table(ITEM.table(good, f"{batch.dataset} batch {batch.batch}"), f, compression="zstd")
    return [
        ItemExtracted(
            batch.dataset, r["item"], len(r["turns"]), r["content_hash"], rel, dict(r.get("counts", {}))
        )
        for r in good
    ], bad


@dataclass(frozen=True)
class ItemBuildTask:
    dataset: str
    items_path: str
    keep: frozenset[int]  # items of this file that are written (not duplicates)
    out: str
    seed: int
    shards: int
    tokenizers: str = ""
    skip: frozenset[int] = frozenset()  # shards a killed run already finished

    @property
    def unit(self) -> str:
        return Path(self.items_path).stem


def _choose(key: str, seed: int, n: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"turn\0{seed}\0{key}".encode(), digest_size=8).digest(), "big") % n


def build_items(task: ItemBuildTask) -> Iterator[tuple[int, int, dict, dict]]:
    with store_for(task.out).open(task.items_path) as f:
        table = pq.read_table(f)
    ITEM.validate(table, task.items_path)
    records = []
    for row in table.to_pylist():
        if row["item"] not in task.keep or place(row["key"], task.seed, task.shards)[0] in task.skip:
            continue
        turns = [{k: t[k] for k in ("kind", "prompt", "target")} for t in row["turns"]]
        chosen = turns[_choose(row["key"], task.seed, len(turns))]
        rec = {f.name: None for f in SAMPLE.fields}
        rec |= {
            "key": row["key"],
            "dataset": task.dataset,
            "kind": "WD",
            "item": row["item"],
            "split": row["split"],
            "image_mask": [slot == "base_0" for slot in CAMERA_SLOTS],
            "prompt": chosen["prompt"],
            "target": chosen["target"],
            "turns": turns,
        }
        for slot in CAMERA_SLOTS:
            rec[image_column(slot)] = row["image"] if slot == "base_0" else black_jpeg()
        records.append(rec)
    tokenize = TokenizeSample(tokenizer_set_at(task.tokenizers))
    records = [tokenize(rec) for rec in records]
    SAMPLE.table(records, task.items_path)
    for rec in records:
        shard, position = place(rec["key"], task.seed, task.shards)
        index_row = {
            "key": rec["key"],
            "episode": None,
            "frame": None,
            "kind": "WD",
            "split": rec["split"],
            "success": None,
            "duration": None,
            "prompt_chars": len(rec["prompt"]),
            "fast_tokens": 0,
            "input_tokens": len(rec["input_ids"]),
        }
        yield shard, position, to_members(rec), index_row
