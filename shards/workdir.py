"""The layout's `work/` folder: every intermediate path of `vlamix ingest`, named once, and the one way
each step's outcomes are written and read back (docs/design.md §10).

    work/frames/<dataset>/<episode>.parquet      frame records of an extracted robot episode
    work/items/<dataset>/<batch>.parquet         item records of an extracted batch of web items
    work/extracted/<dataset>.jsonl               one line per unit written (ExtractedEpisode / ExtractedItem)
    work/quarantined/<dataset>.jsonl             one QuarantineRecord per unit the extract refused
    work/annotations/<dataset>.jsonl             the spans of an HL / VI dataset; `.lines.json`: lines read
    work/failed.json                             datasets that failed as a whole, with the reason
    work/fit/<dataset>.npz                       FAST-fit chunk candidates of a robot dataset (stats step's pass)
    work/fit/texts.json                          the robot frames' distinct texts (the same pass)
    work/stats_parts/<dataset>/<pass>/<task>.npz a stats unit's partial summary (removed after the step)
    work/tokenizer_set.json                      the tokenizer set the build uses: path and sha256
    work/build/<dataset>.json                    the build plan's fingerprint (resume)
    work/spill/<dataset>/<shard>/<unit>.arrow    built samples on their way to a shard
    work/build_quarantine/<dataset>/<unit>.json  a unit the samples' gate refused at build
    work/shards/<dataset>/<shard>.json           a finished shard's summary (written after its tar)
    work/index/<dataset>/<shard>.parquet         a finished shard's index rows
    work/progress/<step>/<unit>.json             a finished unit's marker: the frames it did (progress)
    work/<engine>_<step>.json                    the engine's own counters of the last run of a step
    work/owner.json                              the sources file that made the layout
    work/export/<dataset>-<fingerprint>/         an export to a URL, staged (removed once uploaded)
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Literal

from vlamix.schemas.outcome import ExtractedEpisode, ExtractedItem
from vlamix.schemas.quarantine import QuarantineRecord
from vlamix.shards.layout import WORK_DIR
from vlamix.shards.store import Store, store_for
from vlamix.sources.annotations_jsonl import Span

__all__ = ["Outcome", "WorkDir"]

Outcome = Literal["extracted", "quarantined"]


class WorkDir:
    """`work/` of the layout `store` holds. Paths are layout-relative strings (the Store's own)."""

    FAILED = f"{WORK_DIR}/failed.json"
    TOKENIZER_SET = f"{WORK_DIR}/tokenizer_set.json"
    OWNER = f"{WORK_DIR}/owner.json"
    SPILL = f"{WORK_DIR}/spill"
    FIT_TEXTS = f"{WORK_DIR}/fit/texts.json"
    STATS_PARTS = f"{WORK_DIR}/stats_parts"
    EXPORT = f"{WORK_DIR}/export"  # `vlamix export` stages a dataset bound for a URL here
    # the folders whose children are dataset names (the layout owner's check reads them)
    DATASET_FOLDERS = (f"{WORK_DIR}/frames", f"{WORK_DIR}/items", f"{WORK_DIR}/build")

    def __init__(self, store: Store):
        self.store = store

    @classmethod
    def at(cls, url: str) -> WorkDir:
        return cls(store_for(url))

    # ---- paths -------------------------------------------------------------------------------------

    @staticmethod
    def holds(rel: str) -> bool:
        """Whether the layout-relative path `rel` lies in `work/` (publish and lint skip it)."""
        return rel == WORK_DIR or rel.startswith(f"{WORK_DIR}/")

    @staticmethod
    def frames(dataset: str, episode: int | None = None) -> str:
        folder = f"{WORK_DIR}/frames/{dataset}"
        return folder if episode is None else f"{folder}/{episode:06d}.parquet"

    @staticmethod
    def items(dataset: str, batch: int | None = None) -> str:
        folder = f"{WORK_DIR}/items/{dataset}"
        return folder if batch is None else f"{folder}/{batch:06d}.parquet"

    @staticmethod
    def outcomes(outcome: Outcome, dataset: str) -> str:
        return f"{WORK_DIR}/{outcome}/{dataset}.jsonl"

    @staticmethod
    def spans(dataset: str) -> str:
        return f"{WORK_DIR}/annotations/{dataset}.jsonl"

    @staticmethod
    def span_lines(dataset: str) -> str:
        return f"{WORK_DIR}/annotations/{dataset}.lines.json"

    @staticmethod
    def fit_chunks(dataset: str) -> str:
        return f"{WORK_DIR}/fit/{dataset}.npz"

    @classmethod
    def stats_part(cls, dataset: str, stage: int, task: int) -> str:
        return f"{cls.STATS_PARTS}/{dataset}/{stage}/{task:06d}.npz"

    @staticmethod
    def progress(step: str, unit: str | None = None) -> str:
        folder = f"{WORK_DIR}/progress/{step}"
        return folder if unit is None else f"{folder}/{unit}.json"

    @staticmethod
    def engine_counters(engine: str, step: str) -> str:
        return f"{WORK_DIR}/{engine}_{step}.json"

    @staticmethod
    def build_plan(dataset: str) -> str:
        return f"{WORK_DIR}/build/{dataset}.json"

    @staticmethod
    def shard_summary(dataset: str, shard: int | None = None) -> str:
        folder = f"{WORK_DIR}/shards/{dataset}"
        return folder if shard is None else f"{folder}/{shard:06d}.json"

    @staticmethod
    def index_part(dataset: str, shard: int | None = None) -> str:
        folder = f"{WORK_DIR}/index/{dataset}"
        return folder if shard is None else f"{folder}/{shard:06d}.parquet"

    @classmethod
    def spill(cls, dataset: str, shard: int | None = None, unit: str | None = None) -> str:
        folder = f"{cls.SPILL}/{dataset}" if shard is None else f"{cls.SPILL}/{dataset}/{shard:06d}"
        return folder if unit is None else f"{folder}/{unit}.arrow"

    @staticmethod
    def build_quarantine(dataset: str, unit: str | None = None) -> str:
        folder = f"{WORK_DIR}/build_quarantine/{dataset}"
        return folder if unit is None else f"{folder}/{unit}.json"

    # ---- writing -----------------------------------------------------------------------------------

    def write_lines(self, rel: str, records: Iterable, keep_order: bool = False) -> str:
        """One JSON line per record (anything with `to_json`), sorted (engine order never shows) unless
        `keep_order` (records the driver read in their file's order)."""
        lines = [r.to_json() for r in records]
        lines = lines if keep_order else sorted(lines)
        self.store.write_text(rel, "".join(line + "\n" for line in lines))
        return rel

    def write_outcomes(
        self, outcome: Outcome, dataset: str, records: Iterable, keep_order: bool = False
    ) -> str:
        return self.write_lines(self.outcomes(outcome, dataset), records, keep_order)

    def ensure_outcomes(self, dataset: str) -> None:
        """A dataset with nothing to read still gets its (empty) outcome files."""
        for outcome in ("extracted", "quarantined"):
            if not self.store.exists(self.outcomes(outcome, dataset)):
                self.write_lines(self.outcomes(outcome, dataset), [])

    def write_spans(self, dataset: str, spans: list[Span], lines_read: int) -> None:
        self.write_lines(self.spans(dataset), spans, keep_order=True)
        self.store.write_text(self.span_lines(dataset), json.dumps({"read": lines_read}))

    def write_build_quarantine(self, unit: str, record: QuarantineRecord) -> None:
        self.store.write_text(self.build_quarantine(record.dataset, unit), record.to_json())

    # ---- reading -----------------------------------------------------------------------------------

    def read_lines(self, rel: str) -> list[dict]:
        try:
            text = self.store.read_text(rel)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"{self.store.url_of(rel)} is missing: run the earlier steps first (`vlamix ingest` without --only)"
            ) from e
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def extracted_episodes(self, dataset: str) -> list[ExtractedEpisode]:
        rows = self.read_lines(self.outcomes("extracted", dataset))
        return sorted((ExtractedEpisode(**d) for d in rows), key=lambda e: e.episode)

    def extracted_items(self, dataset: str) -> list[ExtractedItem]:
        rows = self.read_lines(self.outcomes("extracted", dataset))
        return sorted((ExtractedItem(**d) for d in rows), key=lambda i: i.item)

    def quarantined(self, dataset: str) -> list[QuarantineRecord]:
        return [QuarantineRecord(**d) for d in self.read_lines(self.outcomes("quarantined", dataset))]

    def read_spans(self, dataset: str) -> dict[int, tuple[Span, ...]]:
        """The spans of an HL / VI dataset by robot episode, in episode order."""
        by_episode: dict[int, list[Span]] = defaultdict(list)
        for d in self.read_lines(self.spans(dataset)):
            by_episode[d["episode"]].append(Span(**d))
        return {e: tuple(v) for e, v in sorted(by_episode.items())}

    def span_lines_read(self, dataset: str) -> int:
        return self.store.read_json(self.span_lines(dataset))["read"]

    def build_quarantined(self, dataset: str) -> list[QuarantineRecord]:
        """Units the build's sample gate refused for `dataset` (after extract counted them as kept)."""
        rels = self.store.glob(f"{self.build_quarantine(dataset)}/*.json")
        return sorted(
            (QuarantineRecord(**self.store.read_json(r)) for r in rels), key=lambda q: q.episode or 0
        )

    def shard_summaries(self, dataset: str) -> list[dict]:
        return [self.store.read_json(p) for p in self.store.glob(f"{self.shard_summary(dataset)}/*.json")]

    def index_parts(self, dataset: str) -> list[str]:
        return self.store.glob(f"{self.index_part(dataset)}/*.parquet")

    def failed(self) -> dict[str, str]:
        """The datasets the last extract recorded as failed (none when it recorded none)."""
        return self.store.read_json(self.FAILED) if self.store.exists(self.FAILED) else {}

    def tokenizer_set(self) -> dict:
        """{"path": layout-relative folder, "sha256": digest} of the set the tokenizers step chose."""
        return self.store.read_json(self.TOKENIZER_SET)

    def engine_reports(self) -> dict[str, dict]:
        """The Beam counters of this run's extract and build, where they ran (per step)."""
        out = {}
        for step in ("extract", "build"):
            rel = self.engine_counters("beam", step)
            if self.store.exists(rel):
                out[step] = self.store.read_json(rel)
        return out
