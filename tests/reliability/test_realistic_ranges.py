"""Ranges that catch what they promise (issue 18, class 7): rotation deltas logged in degrees fail the
frames' quality gate instead of being wrapped as radians; a logger's unwrapped radian delta (6.2 for a
-0.08 turn) still passes; rotations declared in degrees are a config error, since they are wrapped as
radians."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlamix.config import ConfigError, from_mapping
from vlamix.pipelines.quality import failures
from vlamix.schemas.embodiment import Embodiment, load_embodiment
from vlamix.schemas.expectations import dim_cell, dim_expectations, dim_table

EMB = load_embodiment("widowx_bridge")  # 5 Hz, action dims 3..5 are ee rotation deltas in rad
ROLL = 3  # action column of ee_roll


def _gate(roll_deltas: list[float]) -> list:
    n = len(roll_deltas)
    state = np.zeros((n, EMB.state_dim), np.float32)
    action = np.zeros((n, EMB.action_dim), np.float32)
    action[:, ROLL] = roll_deltas
    action[:, 6] = 1.0
    rows = {"state": state, "action": action}
    table = dim_table(rows, EMB)
    return failures(table, "dims_test", dim_expectations(), dim_cell(table, EMB))


def test_radian_deltas_pass():
    assert _gate([0.01, -0.05, 0.2, -0.3, 0.0]) == []


def test_an_unwrapped_radian_delta_passes():
    """6.2 rad is a -0.08 rad turn written without wrapping: legitimate, wrapped later by the chain."""
    assert _gate([0.02, 2 * math.pi - 0.08, -0.01]) == []


@pytest.mark.parametrize("degrees", [2.0, 3.5, -4.0, 10.0, 45.0, -90.0])
def test_degree_deltas_fail_the_gate(degrees):
    bad = _gate([0.0, degrees, 0.0])
    assert bad, f"a {degrees} degree step passed as radians"
    assert (bad[0].row, bad[0].column) == (1, "action.ee_roll")


def test_an_episode_of_small_degree_steps_fails_somewhere():
    """A whole episode logged in degrees (0.5 to 3 degrees a step): every step above 2 pi / 5 Hz rad
    (1.26) fails, so the episode is caught."""
    steps = [0.5, 1.0, 1.5, 2.0, 3.0]
    bad = _gate(steps)
    assert [f.row for f in bad] == [2, 3, 4]


def test_a_spec_declaring_its_own_range_takes_it():
    data = {
        "name": "deg_ok",
        "description": "a robot whose spec says how large its rotation steps are",
        "control_rate_hz": 5,
        "control_mode": "ee",
        "state": [{"name": "r", "kind": "ee_rotation", "unit": "rad"}],
        "action": [
            {"name": "r", "kind": "ee_rotation", "unit": "rad", "representation": "delta", "range": [-3, 3]}
        ],
        "cameras": {"cam": "base_0"},
    }
    emb = from_mapping(Embodiment, data, "test")
    table = dim_table({"state": np.zeros((2, 1)), "action": np.array([[2.0], [-2.5]])}, emb)
    assert failures(table, "dims_own", dim_expectations(), dim_cell(table, emb)) == []


def test_rotations_declared_in_degrees_are_a_config_error():
    data = {
        "name": "deg_spec",
        "description": "Euler rotations in degrees",
        "control_rate_hz": 5,
        "control_mode": "ee",
        "rotation": "euler",
        "state": [{"name": "r", "kind": "ee_rotation", "unit": "deg"}],
        "action": [{"name": "r", "kind": "ee_rotation", "unit": "deg", "representation": "delta"}],
        "cameras": {"cam": "base_0"},
    }
    with pytest.raises(ConfigError, match="convert the data to radians"):
        from_mapping(Embodiment, data, "test")


def test_absolute_euler_angles_in_degrees_fail_the_range():
    """State rotations logged in degrees (yaw 45, 90) are outside one turn; 3.0 may be radians."""
    n = 3
    state = np.zeros((n, EMB.state_dim), np.float32)
    state[:, 5] = [3.0, 45.0, 90.0]
    table = dim_table({"state": state, "action": np.zeros((n, EMB.action_dim))}, EMB)
    bad = failures(table, "dims_abs", dim_expectations(), dim_cell(table, EMB))
    assert {(f.row, f.column) for f in bad} == {(1, "state.ee_yaw"), (2, "state.ee_yaw")}


def _spec(rotation: str, dim: dict) -> dict:
    return {
        "name": "deg",
        "description": "rotations in degrees",
        "control_rate_hz": 5,
        "control_mode": "ee",
        "rotation": rotation,
        "state": [{"name": "r", "kind": "ee_rotation", "unit": "deg"}],
        "action": [{"name": "r", "kind": "ee_rotation", "unit": "deg", "representation": "delta", **dim}],
        "cameras": {"cam": "base_0"},
    }


def test_degrees_without_a_wrap_are_refused_too_unless_ranges_are_declared():
    """Without `rotation: euler` nothing is wrapped, but the default range and the step gate count
    radians: degrees need their own ranges on every dim."""
    with pytest.raises(ConfigError, match="convert the data to radians"):
        from_mapping(Embodiment, _spec("none", {}), "test")
    data = _spec("none", {"range": [-30, 30]})
    data["state"][0]["range"] = [-180, 180]
    assert from_mapping(Embodiment, data, "test").action[0].range == (-30, 30)
