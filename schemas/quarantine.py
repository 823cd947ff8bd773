"""Quarantine records (docs/design.md §6): why an episode or item was rejected, one JSON object a line."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

__all__ = ["BadRecord", "QuarantineRecord"]


@dataclass(frozen=True)
class QuarantineRecord:
    dataset: str
    source_file: str
    reason: str
    episode: int | None = None
    item: int | None = None
    frame: int | None = None
    field: str | None = None
    frames: int = 0  # frames the rejected episode held (0 when unknown), for the manifest's accounting

    def to_json(self) -> str:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(d, sort_keys=True)

    def describe(self) -> str:
        where = [self.source_file]
        if self.episode is not None:
            where.append(f"episode {self.episode}")
        if self.item is not None:
            where.append(f"item {self.item}")
        if self.frame is not None:
            where.append(f"frame {self.frame}")
        if self.field is not None:
            where.append(f"field {self.field}")
        return f"{', '.join(where)}: {self.reason}"


class BadRecord(Exception):
    """Raised by readers and transforms for input that must be quarantined, never for bugs: the
    pipelines catch exactly this class and route its record to the dead-letter output."""

    def __init__(self, record: QuarantineRecord):
        super().__init__(record.describe())
        self.record = record

    def __reduce__(self):  # picklable across Beam and Ray workers
        return (BadRecord, (self.record,))
