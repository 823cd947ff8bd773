"""The reader of each raw format: `list_episodes(sources, source)` and `read_episode(ref, source, embodiment)`.

Modules are imported when their format is first asked for: an ingest of LeRobot data never imports the
MCAP or Zarr libraries."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import NamedTuple

__all__ = ["EPISODE_IDS", "READER_MODULES", "Reader", "reader_for"]


class Reader(NamedTuple):
    list_episodes: Callable
    read_episode: Callable[..., Iterator[dict]]


# format -> the module (under vlamix.sources) that owns it
READER_MODULES: dict[str, str] = {
    "aloha_hdf5": "aloha_hdf5",
    "hdf5": "hdf5_keys",
    "lerobot": "lerobot",
    "mcap": "mcap_bag",
    "rlds": "rlds",
    "zarr": "zarr_buffer",
}


# What an episode's id (the frame's `episode`, the key, the index and the quarantine) is, per format:
# the source's own, so annotations and users address episodes as the source names them (docs/design.md §7).
EPISODE_IDS: dict[str, str] = {
    "aloha_hdf5": "the number ending the file name (episode_3.hdf5 is 3); the position in natural path "
    "order when a file carries none or two files carry the same",
    "hdf5": "episodes: file: as aloha_hdf5 (the number ending the file name, else the position); episodes: "
    "group: the number ending the group's name (data/demo_7 is 7) when all are unique over all files, else "
    "its position over all files in natural order; a file that lists no episode gets an id past the largest",
    "lerobot": "LeRobot's episode_index",
    "mcap": "the number ending the bag's file or folder name, else its position in natural path order",
    "rlds": "the record's position over the TFRecord files in natural path order, or the feature "
    "`keys: {episode_id: ...}` names",
    "zarr": "the episode's position in meta/episode_ends (per store; stores in natural path order follow on)",
}


def reader_for(fmt: str) -> Reader:
    try:
        module = importlib.import_module(f"vlamix.sources.{READER_MODULES[fmt]}")
    except KeyError:
        raise ValueError(f"no reader for format {fmt!r}; known: {sorted(READER_MODULES)}") from None
    return Reader(module.list_episodes, module.read_episode)
