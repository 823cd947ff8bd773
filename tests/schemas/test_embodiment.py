from __future__ import annotations

import pytest

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import load_embodiment, shipped_embodiments


def test_shipped_specs_load():
    assert {"aloha", "mobile_aloha"} <= set(shipped_embodiments())
    mm = load_embodiment("mobile_aloha")
    assert (mm.state_dim, mm.action_dim, mm.chunk_horizon) == (14, 16, 50)
    assert [d.name for d in mm.action[-2:]] == ["base_linear_velocity", "base_angular_velocity"]
    assert mm.cameras["cam_high"] == "base_0" and mm.cameras["top"] == "base_0"


def _write(tmp_path, text):
    p = tmp_path / "robot.yaml"
    p.write_text(text)
    return p


BASE = """name: robot
description: test arm
control_rate_hz: 10
control_mode: joint
state: [{name: j, kind: joint_position, unit: rad}]
action: [{name: j, kind: joint_position, unit: rad}]
cameras: {front: base_0}
"""


def test_unknown_key_suggests_the_right_one(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'control_rate' .*did you mean 'control_rate_hz'"):
        load_embodiment(_write(tmp_path, BASE.replace("control_rate_hz", "control_rate")))


def test_horizon_beyond_model_horizon_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="exceeds the model horizon 50"):
        load_embodiment(_write(tmp_path, BASE + "horizon: 64\n"))


def test_bad_slot_and_literal_are_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown slot 'front_cam'"):
        load_embodiment(_write(tmp_path, BASE.replace("base_0", "front_cam")))
    with pytest.raises(ConfigError, match=r"control_mode: 'torque' is not one of"):
        load_embodiment(_write(tmp_path, BASE.replace("control_mode: joint", "control_mode: torque")))


def test_unknown_name_lists_shipped():
    with pytest.raises(ConfigError, match="shipped ones are"):
        load_embodiment("mobile_alpha")
