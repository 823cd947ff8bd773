"""The bundled Zarr replay-buffer sample `umi_sim`: deterministic, small, and UMI-like."""

from __future__ import annotations

import numpy as np
import zarr
from conftest import SAMPLES
from scipy.spatial.transform import Rotation

from vlamix.sources.synthetic.zarr_samples import GRIPPER_OPEN_M, RATE_HZ, generate_zarr

STORE = SAMPLES / "umi_sim" / "replay_buffer.zarr"


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_regenerating_gives_the_checked_in_bytes(tmp_path):
    (store,) = generate_zarr(tmp_path)
    assert store == tmp_path / "umi_sim" / "replay_buffer.zarr"
    made, bundled = _files(store), _files(STORE)
    assert made.keys() == bundled.keys()
    assert [k for k in made if made[k] != bundled[k]] == []
    assert sum(len(b) for b in made.values()) < 400_000  # tiny: ingested by several tests


def test_layout_is_a_diffusion_policy_replay_buffer_in_umi_names():
    root = zarr.open_group(STORE, mode="r")
    assert root.metadata.zarr_format == 2
    ends = root["meta/episode_ends"][:]
    assert len(ends) == 3 and (np.diff(ends) > 0).all()
    assert all(20 <= n <= 40 for n in np.diff([0, *ends]))
    camera = root["data/camera0_rgb"]
    assert camera.dtype == np.uint8 and camera.shape[1:] == (64, 64, 3) and camera.chunks[0] == 1
    for key, width in [
        ("robot0_eef_pos", 3),
        ("robot0_eef_rot_axis_angle", 3),
        ("robot0_gripper_width", 1),
        ("action", 7),
    ]:
        assert root[f"data/{key}"].shape == (ends[-1], width), key


def test_actions_are_the_next_pose_and_the_gripper_closes_on_the_cube():
    root = zarr.open_group(STORE, mode="r")
    ends = root["meta/episode_ends"][:]
    for start, end in zip([0, *ends[:-1]], ends, strict=True):
        pos = root["data/robot0_eef_pos"][start:end]
        rot = root["data/robot0_eef_rot_axis_angle"][start:end]
        width = root["data/robot0_gripper_width"][start:end, 0]
        action = root["data/action"][start:end]
        assert np.abs(action[:-1, :3] - pos[1:]).mean() < 0.01  # the follower lands near the target
        turn = Rotation.from_rotvec(action[:-1, 3:6]).inv() * Rotation.from_rotvec(rot[1:])
        assert np.median(turn.magnitude()) < 0.05
        assert width[0] == GRIPPER_OPEN_M and 0.02 < width.min() < 0.05  # holds a 4 cm cube
        times = root["data/timestamp"][start:end]
        np.testing.assert_allclose(np.diff(times), 1 / RATE_HZ, rtol=1e-5)  # seconds since the epoch
