"""Web (WD) items through the steps: a batch of items -> item Parquet (extract), one file of items ->
one sample per kept item (build)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from vlamix.pipelines.options import ErrorPolicy, unexpected_reason
from vlamix.pipelines.quality import failures
from vlamix.pipelines.sample import Sample
from vlamix.pipelines.tokenizer_cache import tokenizer_set_at
from vlamix.pipelines.units import Extraction, PlacedSample
from vlamix.schemas.embodiment import CAMERA_SLOTS
from vlamix.schemas.expectations import item_expectations, item_table
from vlamix.schemas.item import ITEM
from vlamix.schemas.outcome import ExtractedItem
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.schemas.sample import SAMPLE
from vlamix.shards.assign import place
from vlamix.shards.store import store_for
from vlamix.shards.workdir import WorkDir
from vlamix.sources.web import ItemBatch, read_item
from vlamix.transforms.tokenize import TokenizeSample
from vlamix.transforms.web_item import PadItem

__all__ = ["ItemsBuild", "ItemsExtract"]


@dataclass(frozen=True)
class ItemsExtract:
    """One batch of web items: read one at a time under the error policy, gated, written as item Parquet."""

    batch: ItemBatch

    @property
    def dataset(self) -> str:
        return self.batch.dataset

    @property
    def out(self) -> str:
        return self.batch.out

    @property
    def name(self) -> str:
        return f"{self.batch.dataset}-b{self.batch.batch:06d}"

    @property
    def expected_frames(self) -> int | None:
        return len(self.batch.items)

    def extract(self, policy: ErrorPolicy) -> Extraction:
        batch = self.batch
        try:
            results, bad = self._extract(policy)
        except Exception as e:  # past the items (the gate, the write): every item of the batch
            if policy == "raise":
                raise
            reason = unexpected_reason(e)
            results, bad = (
                [],
                [QuarantineRecord(batch.dataset, r.source_file, reason, item=r.item) for r in batch.items],
            )
        return Extraction(results, bad, {"items_read": len(batch.items), "items_quarantined": len(bad)})

    def _read(self, policy: ErrorPolicy) -> tuple[list[dict], list[QuarantineRecord]]:
        batch, tables, pad = self.batch, {}, PadItem()
        good, bad = [], []
        for ref in batch.items:
            try:
                good.append(pad(read_item(batch, ref, tables)))
            except BadRecord as e:
                bad.append(e.record)
            except Exception as e:
                if policy == "raise":
                    raise
                bad.append(
                    QuarantineRecord(batch.dataset, ref.source_file, unexpected_reason(e), item=ref.item)
                )
        return good, bad

    def _extract(self, policy: ErrorPolicy) -> tuple[list[ExtractedItem], list[QuarantineRecord]]:
        batch = self.batch
        good, bad = self._read(policy)
        failed = {}
        for f in failures(item_table(good), "items_WD", item_expectations()):
            failed.setdefault(f.row, f)  # the quality gate: the first failure of each item names it
        for row, f in sorted(failed.items()):
            it = good[row]
            bad.append(
                QuarantineRecord(
                    batch.dataset, it["source_file"], f.reason(), None, it["item"], None, f.column
                )
            )
        good = [it for i, it in enumerate(good) if i not in failed]
        rel = WorkDir.items(batch.dataset, batch.batch)
        if good:
            with store_for(batch.out).open_write(rel) as f:
                pq.write_table(
                    ITEM.table(good, f"{batch.dataset} batch {batch.batch}"), f, compression="zstd"
                )
        results = [
            ExtractedItem(
                batch.dataset, r["item"], len(r["turns"]), r["content_hash"], rel, dict(r.get("counts", {}))
            )
            for r in good
        ]
        return results, bad


def _choose(key: str, seed: int, n: int) -> int:
    """The turn a web sample carries as its prompt/target (all turns go into `turns.json`): seeded."""
    return int.from_bytes(hashlib.blake2b(f"turn\0{seed}\0{key}".encode(), digest_size=8).digest(), "big") % n


@dataclass(frozen=True)
class ItemsBuild:
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

    @property
    def expected_frames(self) -> int | None:
        return None if self.skip else len(self.keep)  # a resumed unit: known only once placed

    def samples(self) -> Iterator[PlacedSample]:
        with store_for(self.out).open(self.items_path) as f:
            table = pq.read_table(f)
        ITEM.validate(table, self.items_path)
        tokenize = TokenizeSample(tokenizer_set_at(self.tokenizers))
        samples = []
        for row in table.to_pylist():
            if row["item"] not in self.keep or place(row["key"], self.seed, self.shards)[0] in self.skip:
                continue
            turns = [{k: t[k] for k in ("kind", "prompt", "target")} for t in row["turns"]]
            chosen = turns[_choose(row["key"], self.seed, len(turns))]
            tokens = tokenize({"prompt": chosen["prompt"], "target": chosen["target"], "key": row["key"]})
            samples.append(
                Sample(
                    key=row["key"],
                    dataset=self.dataset,
                    kind="WD",
                    split=row["split"],
                    images=tuple(row["image"] if slot == "base_0" else None for slot in CAMERA_SLOTS),
                    prompt=chosen["prompt"],
                    target=chosen["target"],
                    input_ids=tokens["input_ids"],
                    loss_mask=tokens["loss_mask"],
                    item=row["item"],
                    turns=turns,
                )
            )
        SAMPLE.table([s.plain_record() for s in samples], self.items_path)
        for s in samples:
            shard, position = place(s.key, self.seed, self.shards)
            yield shard, position, s
