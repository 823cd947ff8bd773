"""Web datasets (WD): items listed in batches, extracted to item Parquet, one sample per kept item,
accounted for per item (and turn)."""

from __future__ import annotations

import pandas as pd

from vlamix.pipelines.build_plan import plan_units, prepare_dataset
from vlamix.pipelines.entries import shard_entries, write_quarantine
from vlamix.pipelines.kinds import DatasetKind, Overlap, gate_frame
from vlamix.pipelines.options import IngestOptions
from vlamix.pipelines.quality import GATE_PREFIX
from vlamix.pipelines.robot_kind import listed, tokenizer_dir
from vlamix.pipelines.units import BuildUnit, ExtractUnit
from vlamix.pipelines.web_tasks import ItemsBuild, ItemsExtract
from vlamix.schemas.outcome import ExtractedItem
from vlamix.schemas.quarantine import QuarantineRecord
from vlamix.shards.manifest import ItemAccounting
from vlamix.shards.workdir import WorkDir
from vlamix.sources.config import SourcesFile, WebSource
from vlamix.sources.web import COUNTERS, list_items

__all__ = ["WebDataset"]


class WebDataset(DatasetKind):
    def __init__(self, sources: SourcesFile, w: WebSource):
        self.sources, self.w, self.name = sources, w, w.name

    def outcome(
        self, work: WorkDir
    ) -> tuple[list[ExtractedItem], list[QuarantineRecord], list[ExtractedItem]]:
        """(kept, quarantined, duplicates): duplicates are items whose image bytes an earlier item has."""
        seen: set[str] = set()
        kept, dups = [], []
        for it in work.extracted_items(self.name):
            (dups if it.content_hash in seen else kept).append(it)
            seen.add(it.content_hash)
        return kept, work.quarantined(self.name), dups

    def extract_units(self, opts: IngestOptions) -> list[ExtractUnit]:
        batches = listed(self.sources, self.name, list_items, self.sources, self.w, opts.url)
        opts.store.rmtree(WorkDir.items(self.name))
        return [ItemsExtract(b) for b in batches]

    def after_extract(self, opts: IngestOptions) -> None:
        opts.work.ensure_outcomes(self.name)

    def build_units(self, opts: IngestOptions) -> list[BuildUnit]:
        kept, _, _ = self.outcome(opts.work)
        if not kept:
            prepare_dataset(opts.store, self.name, "", 0, True)
            return []
        by_file: dict[str, set[int]] = {}
        for it in kept:
            by_file.setdefault(it.items_path, set()).add(it.item)
        tok = tokenizer_dir(opts)

        def units(n: int) -> list[BuildUnit]:
            return [
                ItemsBuild(self.name, path, frozenset(items), opts.url, opts.seed, n, tok)
                for path, items in sorted(by_file.items())
            ]

        return plan_units(opts, self.name, len(kept), units, source=self.w, units=[i.to_json() for i in kept])

    def accounting(self, work: WorkDir) -> ItemAccounting:
        kept, quarantined, dups = self.outcome(work)
        return ItemAccounting(
            read=len(kept) + len(quarantined) + len(dups),
            written=len(kept),
            quarantined=len(quarantined),
            duplicates=len(dups),
            turns_read=sum(i.turns for i in kept + dups),
            turns_written=sum(i.turns for i in kept),
            # left out or changed by a stated rule, never silently
            rules={c: sum(i.counts.get(c, 0) for i in kept) for c in COUNTERS},
        )

    def manifest_entry(self, work: WorkDir) -> dict:
        acc = self.accounting(work)
        acc.check(self.name)
        w = self.w
        return {
            "kind": "WD",
            "license": w.license,
            "citation": w.citation,
            "samples": acc.written,
            "accounting": acc.to_json(),
            "quarantine": write_quarantine(work.store, self.name, work.quarantined(self.name)),
            **shard_entries(work, self.name, acc.written, "items"),
        }

    def overlap(self, work: WorkDir) -> Overlap:
        return "item", {i.content_hash for i in self.outcome(work)[0]}

    def gate_rows(self, work: WorkDir) -> pd.DataFrame:
        kept, quarantined, dups = self.outcome(work)
        gated = [q for q in quarantined if q.reason.startswith(GATE_PREFIX)]
        return gate_frame([f"item {i.item}" for i in kept + dups], [f"item {q.item}" for q in gated])
