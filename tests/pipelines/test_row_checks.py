"""The vectorized row checks (schemas/row_checks.py) find exactly the failing rows and values that
great_expectations' own validation of the same suites finds, on tables with planted failures of every
kind each suite checks: the gates kept their guarantees when they stopped importing great_expectations
in the workers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vlamix.pipelines.quality import failures, gx_failures
from vlamix.schemas.embodiment import dim_range, load_embodiment
from vlamix.schemas.expectations import (
    BROKEN_TEXT,
    dim_cell,
    dim_expectations,
    dim_table,
    frame_expectations,
    frame_table,
    item_expectations,
    item_table,
    sample_expectations,
)
from vlamix.schemas.row_checks import Expect

EMB = load_embodiment("aloha")


def _same(table: pd.DataFrame, suite: list[Expect], locate=None) -> list:
    ours = failures(table, "suite", suite, locate)
    theirs = gx_failures(table, "suite", suite, locate)
    assert [(f.row, f.expectation, f.column) for f in ours] == [
        (f.row, f.expectation, f.column) for f in theirs
    ]
    for a, b in zip(ours, theirs, strict=True):  # values equal, NaN to NaN
        assert a.value == b.value or (a.value != a.value and b.value != b.value), (a, b)
    return ours


def test_the_dim_suite_agrees_with_great_expectations():
    state, action = np.zeros((8, EMB.state_dim)), np.zeros((8, EMB.action_dim))
    _, hi = dim_range(EMB.state[2])
    state[1, 2] = hi
    state[2, 2] = np.nextafter(hi, np.inf)
    state[3, 4] = np.inf
    action[5, 0] = np.nan
    action[6, 3] = -1e9
    table = dim_table({"state": state, "action": action}, EMB)
    assert len(_same(table, dim_expectations(), dim_cell(table, EMB))) == 4


def test_the_frame_suite_agrees_with_great_expectations():
    step = 1.0 / EMB.control_rate_hz
    ts = np.arange(10) * step
    ts[3] = ts[2]  # not strictly increasing, and a zero step
    ts[6] = np.nan  # a null: skipped by increasing, its steps null too
    ts[8] = ts[7] + 5 * step  # a gap
    tasks = ["pick"] * 10
    tasks[4] = f"pi{BROKEN_TEXT}ck"
    table = frame_table({"timestamp": ts, "task": tasks}, EMB)
    got = _same(table, frame_expectations(EMB))
    assert {(f.row, f.column) for f in got} >= {(3, "timestamp"), (3, "dt"), (4, "task"), (8, "dt")}


def test_the_item_suite_agrees_with_great_expectations():
    items = [
        {"image": b"\xff\xd8\xff\xe0rest", "turns": [{"prompt": "a", "target": "b"}]},
        {"image": b"GIF89a", "turns": [{"prompt": "a", "target": "b"}]},
        {"image": b"\x89PNG....", "turns": [{"prompt": f"x{BROKEN_TEXT}", "target": "b"}]},
        {"image": None, "turns": []},
    ]
    assert len(_same(item_table(items), item_expectations())) == 3


def test_the_sample_suite_agrees_with_great_expectations():
    table = pd.DataFrame(
        {
            "state_abs_max": [0.5, 101.0, np.inf, 3.0],
            "actions_abs_max": [0.5, 1.0, 2.0, 100.0],
            "state_dims": [EMB.state_dim, 3, EMB.state_dim, EMB.state_dim],
            "action_dims": [EMB.action_dim] * 4,
            "token_min": [0, -1, 5, 0],
            "token_max": [10, 999, 1000, 5],
            "images_ok": [True, False, True, True],
        }
    )
    assert len(_same(table, sample_expectations(EMB, 1000))) == 6


def test_an_unknown_expectation_type_is_refused():
    with pytest.raises(ValueError, match="no vectorized check"):
        Expect("expect_column_values_to_be_unique", "x")
