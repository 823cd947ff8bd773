"""What every benchmark shares: a result row (ours against a baseline measured in the same run), timing
by best of several repeats, and peak memory."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

__all__ = ["Result", "best_time", "best_times", "peak_python_bytes"]


@dataclass
class Result:
    """One figure: `ours` and `baseline` in `unit` (higher is better unless `lower_is_better`), their
    ratio, and the goal the ratio is held to (None: reported only)."""

    bench: str
    name: str
    unit: str
    ours: float
    baseline: float | None
    baseline_name: str
    goal: float | None = None  # the ratio must reach this
    lower_is_better: bool = False
    ceiling: float | None = None  # or: `ours` must stay at or under this (a share, not a ratio)
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0) or self.ours == 0:
            return None
        return self.baseline / self.ours if self.lower_is_better else self.ours / self.baseline

    @property
    def met(self) -> bool | None:
        if self.ceiling is not None:
            return self.ours <= self.ceiling
        if self.goal is None or self.ratio is None:
            return None
        return self.ratio >= self.goal

    def to_json(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of `repeats` runs of `fn`, in seconds (the least disturbed by the rest of the machine)."""
    return best_times([fn], repeats)[0]


def best_times(fns: list[Callable[[], object]], repeats: int = 3) -> list[float]:
    """The fastest of `repeats` runs of each of `fns`, in seconds, run in turns (ours, baseline, ours, ...)
    so that a slow spell of a shared machine falls on both sides of a ratio alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, took in zip(fns, times, strict=True):
            gc.collect()
            t0 = time.perf_counter()
            fn()
            took.append(time.perf_counter() - t0)
    return [min(t) for t in times]


def peak_python_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes allocated while `fn` runs, numpy arrays included (numpy reports to tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
