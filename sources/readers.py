"""The reader of each raw format: `list_episodes(sources, source)` and `read_episode(ref, source, embodiment)`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

from vlamix.sources import aloha_hdf5, lerobot, rlds

__all__ = ["READERS", "Reader", "reader_for"]


class Reader(NamedTuple):
    list_episodes: Callable
    read_episode: Callable[..., Iterator[dict]]


READERS: dict[str, Reader] = {
    "aloha_hdf5": Reader(aloha_hdf5.list_episodes, aloha_hdf5.read_episode),
    "rlds": Reader(rlds.list_episodes, rlds.read_episode),
    "lerobot": Reader(lerobot.list_episodes, lerobot.read_episode),
}


def reader_for(fmt: str) -> Reader:
    try:
        return READERS[fmt]
    except KeyError:
        raise ValueError(f"no reader for format {fmt!r}; known: {sorted(READERS)}") from None
