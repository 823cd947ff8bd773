"""The bundled CE samples: deterministic RLDS sets of two differently logged arms."""

from __future__ import annotations

import numpy as np
from conftest import SAMPLES

from vlamix.sources.rlds import read_features
from vlamix.sources.synthetic.ce_samples import generate_ce
from vlamix.sources.tf_example import decode_example
from vlamix.sources.tfrecord import read_record_at, scan_records


def _episodes(folder):
    out = []
    for path in sorted(folder.glob("*.tfrecord*")):
        out += [decode_example(read_record_at(path, off)) for _, off, _ in scan_records(path)]
    return out


def test_regenerating_gives_the_checked_in_bytes(tmp_path):
    for path in generate_ce(tmp_path):
        rel = path.relative_to(tmp_path)
        assert path.read_bytes() == (SAMPLES / rel).read_bytes(), rel
    for name in ("widowx_sim", "arm6_sim"):
        for meta in ("features.json", "dataset_info.json"):
            assert (tmp_path / name / meta).read_text() == (SAMPLES / name / meta).read_text()


def test_the_two_loggers_name_things_differently():
    a, b = read_features(SAMPLES / "widowx_sim"), read_features(SAMPLES / "arm6_sim")
    assert "steps/observation/state" in a and "steps/observation/state" not in b
    assert "steps/action/joint_targets" in b and "steps/action" in a
    assert {k for k, f in b.items() if f.kind == "Image"} == {
        "steps/observation/agentview_image",
        "steps/observation/eye_in_hand_image",
    }


def test_widowx_actions_are_end_effector_deltas_at_5hz():
    for ep in _episodes(SAMPLES / "widowx_sim"):
        state, action = ep["steps/observation/state"].reshape(-1, 7), ep["steps/action"].reshape(-1, 7)
        moved = state[1:, :3] - state[:-1, :3]
        err = np.abs(moved - action[:-1, :3])
        assert err.mean() < 0.004, err.mean()  # the follower reaches each commanded delta within mm
        assert np.corrcoef(moved.ravel(), action[:-1, :3].ravel())[0, 1] > 0.95
        assert 30 <= len(state) <= 60  # 6-12 s at 5 Hz
        grip = action[:, 6]
        assert grip.min() < 0.1 and grip.max() > 0.9 and grip[0] > 0.9  # open (1) .. closed (0) .. open


def test_arm6_is_joint_targets_at_15hz_with_the_other_gripper_sense():
    for ep in _episodes(SAMPLES / "arm6_sim"):
        q = ep["steps/observation/joint_positions"].reshape(-1, 6)
        target = ep["steps/action/joint_targets"].reshape(-1, 6)
        assert np.abs(target[:-1] - q[1:]).mean() < 0.02  # the next state lands near the target
        assert 90 <= len(q) <= 180  # 6-12 s at 15 Hz
        g = ep["steps/observation/gripper_position"]
        cmd = ep["steps/action/gripper"]
        assert cmd[0] < 0.1 and cmd.max() > 0.9  # 0 open, 1 closed here
        assert 0.3 < g[cmd > 0.99].max() < 0.7  # the fingers stop on the block while commanded shut
