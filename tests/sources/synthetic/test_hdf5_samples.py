"""The bundled `format: hdf5` sample: a deterministic robomimic-style file."""

from __future__ import annotations

import h5py
import numpy as np
from conftest import SAMPLES

from vlamix.sources.synthetic.hdf5_samples import generate_hdf5


def test_regenerating_gives_the_checked_in_bytes(tmp_path):
    (path,) = generate_hdf5(tmp_path)
    rel = path.relative_to(tmp_path)
    assert str(rel) == "robomimic_sim/demos.hdf5"
    assert path.read_bytes() == (SAMPLES / rel).read_bytes(), "same seed, different bytes (or a stale sample)"
    assert path.stat().st_size < 400_000  # tiny: ingested by several tests


def test_actions_lead_the_joints_at_15_hz():
    with h5py.File(SAMPLES / "robomimic_sim" / "demos.hdf5") as f:
        assert sorted(f["data"]) == ["demo_0", "demo_1", "demo_2"]
        for demo in f["data"].values():
            q, act = demo["obs/robot0_joint_pos"][()], demo["actions"][()]
            assert q.shape == (36, 6) and act.shape == (36, 7)
            # the joint target of step t is where the servo is heading: nearer to q[t+1] than q[t] is
            ahead = np.abs(act[:-1, :6] - q[1:]).mean()
            assert ahead < np.abs(q[:-1] - q[1:]).mean()
            grip = demo["obs/robot0_gripper_qpos"][()]
            assert grip.min() < 0.2 and grip.max() > 0.5  # the window holds the grasp
            assert demo["obs/agentview_image"].shape == (36, 64, 64, 3)
            assert h5py.check_vlen_dtype(demo["obs/robot0_eye_in_hand_image"].dtype) == np.uint8
