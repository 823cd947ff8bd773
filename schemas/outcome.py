"""What the extract step says about each unit it wrote: one line per episode or web item in
`work/extracted/<dataset>.jsonl` (shards/workdir.py names the files). Quarantined units are
`QuarantineRecord`s (schemas/quarantine.py)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

__all__ = ["ExtractedEpisode", "ExtractedItem"]


@dataclass(frozen=True)
class ExtractedEpisode:
    """A robot episode written as frame Parquet."""

    dataset: str
    episode: int
    frames: int
    episode_hash: str
    split: str
    source_file: str
    frames_path: str  # relative to the layout root
    samples: int = 0  # frames left after the idle filter and the stride

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class ExtractedItem:
    """A web item written into its batch's item Parquet."""

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
