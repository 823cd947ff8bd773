"""The loader's receiving thread (trainer/loader.py `_received`): items in the loader's order, its error
raised in the consumer, and closing the stream stops the thread (so the workers can be let go)."""

from __future__ import annotations

import threading
import time

import pytest

from vlamix.trainer.loader import _received


def _threads() -> int:
    return sum(t.name == "vlamix-loader" for t in threading.enumerate())


def test_items_come_in_order_and_the_thread_ends_with_the_stream():
    assert list(_received(iter(range(50)), depth=3)) == list(range(50))
    time.sleep(0.05)
    assert _threads() == 0


def test_the_loaders_error_is_raised_in_the_consumer_after_the_items_before_it():
    def failing():
        yield 1
        yield 2
        raise OSError("worker 1 died")

    got = []
    with pytest.raises(OSError, match="worker 1 died"):
        for item in _received(failing()):
            got.append(item)
    assert got == [1, 2]


def test_closing_early_stops_the_thread_blocked_on_a_full_queue():
    pulled = []

    def endless():
        for i in range(10_000):
            pulled.append(i)
            yield i

    stream = _received(endless(), depth=2)
    assert next(stream) == 0
    time.sleep(0.05)  # the thread fills the queue and waits
    stream.close()
    assert _threads() == 0 and len(pulled) < 10
