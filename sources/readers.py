"""The reader of each raw format: `list_episodes(sources, source)` and `read_episode(ref, source, embodiment)`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

from vlamix.sources import aloha_hdf5, lerobot, rlds

__all__ = ["EPISODE_IDS", "READERS", "Reader", "reader_for"]


class Reader(NamedTuple):
    list_episodes: Callable
    read_episode: Callable[..., Iterator[dict]]


READERS: dict[str, Reader] = {
    "aloha_hdf5": Reader(aloha_hdf5.list_episodes, aloha_hdf5.read_episode),
    "rlds": Reader(rlds.list_episodes, rlds.read_episode),
    "lerobot": Reader(lerobot.list_episodes, lerobot.read_episode),
}


# What an episode's id (the frame's `episode`, the key, the index and the quarantine) is, per format:
# the source's own, so annotations and users address episodes as the source names them (docs/design.md §7).
EPISODE_IDS: dict[str, str] = {
    "aloha_hdf5": "the number ending the file name (episode_3.hdf5 is 3); the position in natural path "
    "order when a file carries none or two files carry the same",
    "lerobot": "LeRobot's episode_index",
    "rlds": "the record's position over the TFRecord files in natural path order, or the feature "
    "`keys: {episode_id: ...}` names",
}


def reader_for(fmt: str) -> Reader:
    try:
        return READERS[fmt]
    except KeyError:
        raise ValueError(f"no reader for format {fmt!r}; known: {sorted(READERS)}") from None
