"""What every benchmark shares: a result row (ours against a baseline measured in the same run), timing
by best of several repeats, and peak memory."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

__all__ = ["Result", "best_time", "peak_python_bytes"]


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
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_python_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes allocated while `fn` runs, numpy arrays included (numpy reports to tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
