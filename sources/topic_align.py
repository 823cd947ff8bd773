"""Sampling topics that each tick at their own rate onto one frame grid at the control rate (format: mcap).

Rules (pure functions of message times, in integer nanoseconds, each topic's times sorted ascending):
- Grid: from the first time at which every required topic has a message (the latest of their first
  messages), every 1/rate seconds, to the last message of the topic that ends first.
- Each frame takes, per topic, the latest message at or before the frame time (never a later one: a
  policy must not see the future).
- A message older than MAX_AGE_PERIODS periods at a frame makes the frame invalid. Invalid frames before
  the first valid one are dropped (a topic that started with a stale message, then a pause, has not
  really started); an invalid frame after a valid one is a gap in the recording, and `align` raises
  TopicGap naming the topic and the time: the episode is quarantined, never cut in two or patched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "MAX_AGE_PERIODS",
    "Alignment",
    "NoOverlap",
    "TopicGap",
    "align",
    "frame_grid",
    "grid_size",
    "latest_at_or_before",
]

MAX_AGE_PERIODS = 2  # a frame's message may be at most this many control periods old
NS = 1_000_000_000


class NoOverlap(ValueError):
    """The topics share no valid frame: one ends before another starts, or no frame has them all fresh."""


class TopicGap(ValueError):
    """A topic's latest message is too old at a frame after the first valid one."""

    def __init__(
        self, topic: str, frame: int, frames: int, time_ns: int, last_ns: int, since_s: float, rate: float
    ):
        self.topic, self.frame, self.frames, self.time_ns = topic, frame, frames, time_ns
        age = (time_ns - last_ns) / NS
        super().__init__(
            f"gap in {topic}: no message for {age:.3f} s before frame {frame} (log time {time_ns} ns, "
            f"{since_s:.3f} s into the episode), more than {MAX_AGE_PERIODS} periods at {rate:g} Hz "
            f"({MAX_AGE_PERIODS / rate:.3f} s): a dropped publisher or a paused recording; cut the bag at the "
            "gap (e.g. `mcap filter` / `ros2 bag convert`) into two episodes, or re-record it"
        )


@dataclass(frozen=True)
class Alignment:
    """The frames kept, and per topic which of its messages (index in its sorted times) each one takes."""

    times: np.ndarray  # (n,) int64 ns: frame times, 1/rate apart
    picks: dict[str, np.ndarray]  # topic -> (n,) int64 index into that topic's sorted times
    dropped: int  # leading grid frames dropped because a topic's latest message was too old


def _period_ns(rate: float) -> float:
    return NS / rate


def grid_size(times: dict[str, np.ndarray], rate: float) -> tuple[int, int]:
    """(start ns, number of frames) of the grid over these topics; raises NoOverlap when a topic ends
    before another starts."""
    start_topic = max(times, key=lambda t: times[t][0])
    end_topic = min(times, key=lambda t: times[t][-1])
    start, end = int(times[start_topic][0]), int(times[end_topic][-1])
    if end < start:
        raise NoOverlap(
            f"{end_topic} ends (log time {end} ns) before {start_topic} starts ({start} ns): no time has "
            "a message of every topic"
        )
    return start, int(np.floor((end - start) / _period_ns(rate) + 1e-9)) + 1


def frame_grid(start: int, n: int, rate: float) -> np.ndarray:
    """n frame times from `start` ns, 1/rate apart (rounded to the nanosecond, without drift)."""
    return start + np.round(np.arange(n) * _period_ns(rate)).astype(np.int64)


def latest_at_or_before(times: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Per grid time, the index of the last of `times` (sorted) at or before it; -1 where none is."""
    return np.searchsorted(times, grid, side="right").astype(np.int64) - 1


def align(times: dict[str, np.ndarray], rate: float, max_frames: int) -> Alignment:
    """Sample the required topics (`times`: topic -> sorted int64 ns, each non-empty, in the order errors
    should name them) at `rate`. Raises NoOverlap, TopicGap, or ValueError for a grid above `max_frames`
    (a message with a wild time stretches the episode)."""
    start, n = grid_size(times, rate)
    if n > max_frames:
        raise ValueError(
            f"the topics span {n:,} frames at {rate:g} Hz, above the cap of {max_frames:,} "
            "(a message with a wrong log time?)"
        )
    grid = frame_grid(start, n, rate)
    limit = MAX_AGE_PERIODS * _period_ns(rate)
    picks, fresh = {}, {}
    for topic, t in times.items():
        picks[topic] = latest_at_or_before(t, grid)
        fresh[topic] = (picks[topic] >= 0) & (grid - t[np.maximum(picks[topic], 0)] <= limit)
    valid = np.logical_and.reduce(list(fresh.values()))
    if not valid.any():
        stale = max(times, key=lambda topic: int((~fresh[topic]).sum()))
        raise NoOverlap(
            f"no frame has a message of every topic less than {MAX_AGE_PERIODS} periods old at {rate:g} Hz "
            f"({stale} is too old at every frame: is it published slower than the rate?)"
        )
    first = int(np.argmax(valid))
    broken = np.flatnonzero(~valid[first:])
    if len(broken):
        k = first + int(broken[0])
        topic = next(topic for topic in times if not fresh[topic][k])
        last = int(times[topic][picks[topic][k]])
        raise TopicGap(topic, k - first, n - first, int(grid[k]), last, (grid[k] - grid[first]) / NS, rate)
    return Alignment(grid[first:], {topic: p[first:] for topic, p in picks.items()}, first)
