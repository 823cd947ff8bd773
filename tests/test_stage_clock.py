"""The stage clock (vlamix/stage_clock.py) gives each stage its exclusive seconds: an inner stage's time
is its own, not also its outer stage's; per thread; `since` is a unit's share. Time is a fake clock
here, so the sums are exact."""

from __future__ import annotations

import threading

import pytest

from vlamix import stage_clock
from vlamix.stage_clock import since, stage, totals


@pytest.fixture
def clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(stage_clock.time, "perf_counter", lambda: now[0])

    def advance(seconds: float) -> None:
        now[0] += seconds

    return advance


def test_nested_stages_count_exclusive_seconds(clock):
    before = totals()
    with stage("read"):
        clock(1.0)
        with stage("decode"):
            clock(2.0)
            with stage("resize"):
                clock(0.5)
            clock(0.25)
        clock(3.0)
    with stage("encode"):
        clock(0.125)
    clock(10.0)  # outside any stage: nobody's
    assert since(before) == {"read": 4.0, "decode": 2.25, "resize": 0.5, "encode": 0.125}


def test_an_exception_closes_its_stage(clock):
    before = totals()
    with pytest.raises(RuntimeError), stage("gates"):
        clock(1.0)
        raise RuntimeError("boom")
    with stage("chain"):
        clock(2.0)
    assert since(before) == {"gates": 1.0, "chain": 2.0}


def test_each_thread_keeps_its_own_totals(clock):
    before = totals()
    seen = {}

    def other() -> None:
        mine = totals()
        with stage("tar write"):
            clock(7.0)
        seen.update(since(mine))

    with stage("spill"):
        t = threading.Thread(target=other)
        t.start()
        t.join()
        clock(1.0)
    assert seen == {"tar write": 7.0}
    assert since(before) == {"spill": 8.0}  # the other thread's clock moved this one's too: one fake time


def test_an_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="unknown stage 'parse'"):
        stage("parse")
