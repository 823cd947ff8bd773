"""What a view of one dataset shows, read from its samples (the shards are what the model sees): the
episode list (from the index), and per episode its samples in frame order as `Frame`s: the camera slots
(224x224 padded JPEGs, as in the shard), the numbers (`SampleValues`), the prompt and target, the
subtask and instruction in force, and for web data every turn of the item.

A web dataset has no episodes: its items, in item order, are shown as one sequence (`episode` None),
with the item number standing for the frame.

**Decimation** (the web page only; a recording keeps every sample): an episode of n samples is shown as
every `step`-th sample from its first, `step = ceil(n / MAX_PAGE_FRAMES)`, so a page holds at most
`MAX_PAGE_FRAMES` frames per episode."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

from vlamix.schemas.embodiment import CAMERA_SLOTS
from vlamix.viewer.annotations import texts_in_force
from vlamix.viewer.layout_reader import IndexRow, ViewError, ViewLayout, read_npy
from vlamix.viewer.sample_values import DatasetUnits, SampleValues

__all__ = [
    "DEFAULT_EPISODES",
    "MAX_PAGE_FRAMES",
    "EpisodeInfo",
    "Frame",
    "decimate",
    "episode_list",
    "episode_rows",
    "read_frames",
    "select_episodes",
]

MAX_PAGE_FRAMES = 200  # frames per episode on the web page (see the decimation rule above)
DEFAULT_EPISODES = 5  # episodes shown when none is asked for: the first ones by number


@dataclass(frozen=True)
class EpisodeInfo:
    """One row of the episode list."""

    episode: int | None  # None: a web dataset's items
    split: str
    success: bool | None
    samples: int
    duration: float | None  # seconds
    length: int | None  # frames in the episode: duration x the control rate (None for web data)
    environment: str | None = None  # where it was recorded, when the sources file says


@dataclass(frozen=True)
class Frame:
    """One sample on the timeline."""

    key: str
    frame: int  # frame number in the episode (web data: the item number)
    time: float | None  # seconds from the episode's start (web data: None)
    images: dict[str, bytes]  # slot -> JPEG as the model sees it, for the slots its image mask marks real
    prompt: str
    target: str
    subtask: str
    instruction: str
    turns: list[dict]  # web data: every turn of the item (kind, prompt, target); else []
    values: SampleValues | None  # robot data only


def episode_list(layout: ViewLayout, dataset: str, rate_hz: float | None) -> list[EpisodeInfo]:
    """Every episode of `dataset` in the index, by number (web data: one entry for all items)."""
    rows = layout.index_rows(dataset)
    if layout.entry(dataset)["kind"] == "WD":
        splits = sorted({r.split for r in rows})
        return [EpisodeInfo(None, ", ".join(splits), None, len(rows), None, None)] if rows else []
    by_episode: dict[int, list[IndexRow]] = {}
    for r in rows:
        if not isinstance(r.episode, int) or not isinstance(r.frame, int):
            raise ViewError(f"{layout.store.url}: index row {r.key} of {dataset!r} has no episode or frame")
        by_episode.setdefault(r.episode, []).append(r)
    out = []
    for ep in sorted(by_episode):
        first = by_episode[ep][0]
        length = None
        if first.duration is not None and rate_hz:
            length = round(first.duration * rate_hz)
        out.append(
            EpisodeInfo(
                ep, first.split, first.success, len(by_episode[ep]), first.duration, length, first.environment
            )
        )
    return out


def select_episodes(
    infos: list[EpisodeInfo], wanted: list[int], dataset: str, web: bool
) -> list[EpisodeInfo]:
    """The episodes asked for (in the order given), or the first `DEFAULT_EPISODES` when none is."""
    if web:
        if wanted:
            raise ViewError(f"{dataset!r} is web data: it has items, not episodes; leave out --episode")
        return infos
    if not wanted:
        return infos[:DEFAULT_EPISODES]
    known = {i.episode: i for i in infos}
    missing = [e for e in wanted if e not in known]
    if missing:
        have = ", ".join(str(i.episode) for i in infos[:20]) + (" ..." if len(infos) > 20 else "")
        raise ViewError(f"{dataset!r} has no episode {missing[0]} (quarantined, or not in it); it has {have}")
    return [known[e] for e in dict.fromkeys(wanted)]


def episode_rows(layout: ViewLayout, dataset: str, episode: int | None) -> list[IndexRow]:
    """The index rows of one episode in frame order (web data: every item, in key order)."""
    rows = layout.index_rows(dataset)
    if episode is None:
        return sorted(rows, key=lambda r: r.key)
    return sorted((r for r in rows if r.episode == episode), key=lambda r: (r.frame or 0, r.key))


def decimate(rows: list, max_frames: int = MAX_PAGE_FRAMES) -> tuple[list, int]:
    """(every step-th row from the first, step) with step = ceil(len / max_frames)."""
    step = max(1, math.ceil(len(rows) / max_frames))
    return rows[::step], step


def _meta(sample: dict[str, bytes], where: str) -> dict:
    try:
        meta = json.loads(sample["meta.json"])
    except (KeyError, ValueError) as e:
        raise ViewError(f"{where}: no readable meta.json ({e})") from e
    if not isinstance(meta, dict):
        raise ViewError(f"{where}: meta.json is not an object")
    return meta


def _number(meta: dict, name: str, where: str, integer: bool) -> float:
    """`meta[name]`, which must be an integer (or any real number); never a bool, a string or null."""
    value = meta.get(name)
    if not isinstance(value, int if integer else (int, float)) or isinstance(value, bool):
        raise ViewError(
            f"{where}: meta.json {name} is {value!r}, not {'an integer' if integer else 'a number'}"
        )
    return float(value)


def _turns(sample: dict[str, bytes], where: str) -> list[dict]:
    if "turns.json" not in sample:
        return []
    turns = json.loads(sample["turns.json"])
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise ViewError(f"{where}: turns.json is not a list of turns")
    return [{k: str(t.get(k, "")) for k in ("kind", "prompt", "target")} for t in turns]


def _images(sample: dict[str, bytes], where: str) -> dict[str, bytes]:
    mask = read_npy(sample, "image_mask.npy", where)
    if mask is None or mask.shape != (len(CAMERA_SLOTS),):
        raise ViewError(f"{where}: image_mask.npy is missing or not [{len(CAMERA_SLOTS)}]")
    out = {}
    for slot, real in zip(CAMERA_SLOTS, mask.astype(bool).tolist(), strict=True):
        if real:
            if f"{slot}.jpg" not in sample:
                raise ViewError(f"{where}: the image mask marks {slot} real but the sample has no {slot}.jpg")
            out[slot] = sample[f"{slot}.jpg"]
    return out


def read_frames(
    layout: ViewLayout, dataset: str, episode: int | None, rows: list[IndexRow], units: DatasetUnits | None
) -> Iterator[Frame]:
    """The samples of `rows` (one episode's, in order) as Frames, read `READ_BATCH` at a time."""
    texts = (
        texts_in_force(layout, dataset, episode, [r.frame for r in rows if r.frame is not None])
        if episode is not None
        else {"subtask": {}, "instruction": {}}
    )
    for row, sample in layout.read(dataset, rows):
        where = f"{layout.store.url_of(row.shard)} (sample {row.key})"
        meta = _meta(sample, where)
        if episode is None:
            frame, time = int(_number(meta, "item", where, True)), None
        else:
            frame, time = (
                int(_number(meta, "frame", where, True)),
                _number(meta, "timestamp", where, False),
            )
        yield Frame(
            key=row.key,
            frame=frame,
            time=time,
            images=_images(sample, where),
            prompt=sample.get("prompt.txt", b"").decode(),
            target=sample.get("target.txt", b"").decode(),
            subtask=texts["subtask"].get(frame, ""),
            instruction=texts["instruction"].get(frame, ""),
            turns=_turns(sample, where),
            values=None if units is None else units.values(sample, where),
        )
