"""What the property tests share: derandomized hypothesis settings without an example database, so runs
repeat, and strategies more than one file draws from."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

BASE = settings(
    derandomize=True,
    database=None,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _settings(n: int) -> settings:
    return settings(BASE, max_examples=n)


# Values like 1e300 are chosen on purpose: they overflow float32 and must be caught as non-finite.
overflow_ok = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")

# Any JSON-like value: what a malformed metadata or annotation file may hold where a string or number goes.
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 50) | st.floats(-5, 50) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=6,
)
