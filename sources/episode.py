"""What a reader hands the pipelines: a picklable reference to one raw episode."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EpisodeRef"]


@dataclass(frozen=True, order=True)
class EpisodeRef:
    dataset: str
    index: int  # episode index within the dataset
    path: str  # absolute path of the raw file
    source_file: str  # the path as reported in errors and quarantine (relative to the sources file)
    frames: int = 0  # frames it holds, when known at listing time
