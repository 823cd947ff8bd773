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
    record: int = 0  # for files holding many episodes: the record's index ...
    offset: int = 0  # ... and its byte offset
    split: str | None = None  # the source's own split, when its layout says
    error: str | None = None  # a listing-time problem (a broken file): the episode is quarantined with it
    member: str | None = None  # for files holding episodes as groups (format hdf5): the group's path
