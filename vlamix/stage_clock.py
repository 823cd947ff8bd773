"""Where the ingest's time goes, stage by stage: `with stage("decode"):` around a piece of work adds its
seconds to that stage's total in this thread, exclusive of any stage opened inside it (the inner one's
seconds are its own). A unit of work reports `since(before)`, its thread's totals grown while it ran;
pipelines/progress.py carries them to the driver in the unit's marker, and the report sums them per step
(`reports/ingest.json` `progress.<step>.stages_s`). What no stage covers in a step is the engine's and
the driver's own time.

Never open a stage across a `yield`: the consumer's stages would nest inside it. Costs ~1 us a stage.
"""

from __future__ import annotations

import threading
import time

__all__ = ["STAGES", "Stage", "since", "stage", "totals"]

STAGES = (  # the stages the benchmark's profile lists, in the data's order
    "read",  # raw bytes and fields out of the source files (HDF5, parquet, TFRecord + protobuf)
    "decode",  # image and video decode (at a reduced scale where the codec can)
    "resize",  # the rest of the downscale to 224, and the pad
    "encode",  # 224x224 JPEG encode
    "frame parquet",  # the extracted frames written once, read back by the build
    "gates",  # the quality gates: frames, then built samples
    "chain",  # normalize, chunk, FAST and text tokens
    "assembly",  # typed samples, their checks and webdataset members
    "spill",  # the build's spill files, written and read back by shard
    "tar write",  # shard tars and their index parts
)


class _Clock(threading.local):
    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.stack: list[str] = []
        self.last = 0.0


_clock = _Clock()


class Stage:
    """A reusable context manager for one stage (see `stage`)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __enter__(self) -> None:
        c, now = _clock, time.perf_counter()
        if c.stack:
            top = c.stack[-1]
            c.totals[top] = c.totals.get(top, 0.0) + now - c.last
        c.stack.append(self.name)
        c.last = now

    def __exit__(self, *exc) -> None:
        c, now = _clock, time.perf_counter()
        name = c.stack.pop()
        c.totals[name] = c.totals.get(name, 0.0) + now - c.last
        c.last = now


_STAGES = {name: Stage(name) for name in STAGES}


def stage(name: str) -> Stage:
    """`with stage(name):` adds the block's exclusive seconds to `name` (one of STAGES)."""
    try:
        return _STAGES[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; known: {', '.join(STAGES)}") from None


def totals() -> dict[str, float]:
    """This thread's seconds per stage so far (stages still open count up to their last change)."""
    return dict(_clock.totals)


def since(before: dict[str, float]) -> dict[str, float]:
    """Seconds per stage added in this thread since `before` (a `totals()`), the stages with any."""
    now = _clock.totals
    return {k: now[k] - before.get(k, 0.0) for k in STAGES if now.get(k, 0.0) > before.get(k, 0.0)}
