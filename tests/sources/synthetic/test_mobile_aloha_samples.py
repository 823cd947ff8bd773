"""The bundled Mobile-ALOHA sample: deterministic, in the real layout, and realistic enough to test on."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from conftest import SAMPLES

from vlamix.sources.synthetic.kinematics import forward, inverse_pointing_down
from vlamix.sources.synthetic.mobile_aloha import SampleSpec, generate
from vlamix.transforms.image import decode_jpeg

EPISODES = sorted((SAMPLES / "mobile_aloha").glob("episode_*.hdf5"))
FPS = 50


def _contents(path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
        out["attrs"] = dict(f.attrs)
    return out


def test_bundled_samples_exist_and_are_small():
    assert len(EPISODES) >= 3
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert total <= 25 * 1024 * 1024, f"checked-in samples weigh {total / 1e6:.1f} MB"


# nightly: the samples generator re-run (~9 s); the bundled ingest's recorded bytes in `make test`
# (tests/pipelines/test_bundled_bytes.py) fail first if the checked-in samples change.
@pytest.mark.nightly
def test_regenerating_an_episode_gives_the_checked_in_one(tmp_path):
    (path,) = generate(tmp_path, SampleSpec(), only=[0])
    assert path.read_bytes() == EPISODES[0].read_bytes(), (
        "same seed, different bytes: the generator is not deterministic"
    )
    ours, theirs = _contents(path), _contents(EPISODES[0])
    assert ours.keys() == theirs.keys()


@pytest.mark.parametrize("path", EPISODES, ids=lambda p: p.name)
def test_layout_is_mobile_aloha(path):
    with h5py.File(path, "r") as f:
        t = f["action"].shape[0]
        assert 10 * FPS <= t <= 20 * FPS
        assert f["observations/qpos"].shape == (t, 14) and f["observations/qvel"].shape == (t, 14)
        assert f["action"].shape == (t, 14) and f["base_action"].shape == (t, 2)
        assert bool(f.attrs["compress"])
        assert set(f["observations/images"]) == {"cam_high", "cam_left_wrist", "cam_right_wrist"}
        assert f["compress_len"].shape == (3, t)
        for c, cam in enumerate(("cam_high", "cam_left_wrist", "cam_right_wrist")):
            ds = f[f"observations/images/{cam}"]
            assert ds.dtype == np.uint8 and ds.shape[0] == t
            n = int(f["compress_len"][c, 5])
            assert ds[5][:2].tobytes() == b"\xff\xd8" and ds[5][n - 2 : n].tobytes() == b"\xff\xd9"


def _gripper_events(g: np.ndarray) -> tuple[int, int]:
    closed = g < 0.5
    return int(np.sum(closed[1:] & ~closed[:-1])), int(np.sum(~closed[1:] & closed[:-1]))


@pytest.mark.parametrize("path", EPISODES, ids=lambda p: p.name)
def test_realism_floor(path):
    with h5py.File(path, "r") as f:
        action, qpos, base = f["action"][()], f["observations/qpos"][()], f["base_action"][()]
    # At least two grasps, each a close then an open, on the commanded grippers.
    closes = opens = 0
    for g in (6, 13):
        c, o = _gripper_events(action[:, g])
        closes, opens = closes + c, opens + o
    assert closes >= 2 and opens >= 2
    # The follower's gripper stalls on the cube while the leader says closed (as on the real robot).
    held = action[:, 6] < 0.05
    assert qpos[held, 6].min() > 0.3
    # Smooth: bounded jerk of the commanded joints (rad/s^3), yet every arm joint actually moves.
    arms = np.concatenate([action[:, 0:6], action[:, 7:13]], axis=1)
    jerk = np.diff(arms, n=3, axis=0) * FPS**3
    assert np.abs(jerk).max() < 200.0
    assert (np.ptp(arms, axis=0)[[0, 1, 2, 4, 6, 7, 8, 10]] > 0.1).all()
    # The base drives: forward then back, with some turning.
    assert base[:, 0].max() > 0.2 and base[:, 0].min() < -0.1 and np.abs(base[:, 1]).max() > 0.02
    # The follower lags the leader slightly (a servo), it does not copy it.
    lag = np.abs(qpos[:, :6] - action[:, :6]).mean()
    assert 1e-4 < lag < 0.05


def _ranks(a: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(a))


@pytest.mark.parametrize("path", EPISODES, ids=lambda p: p.name)
def test_images_follow_the_state(path):
    """Each camera's picture changes when, and as much as, what carries it moves: image change over
    4 steps is rank-correlated with joint + base motion, and the most moving fifth of the episode
    changes the picture several times more than the stillest fifth."""
    with h5py.File(path, "r") as f:
        qpos, base = f["observations/qpos"][()], f["base_action"][()]
        steps = np.arange(0, len(qpos) - 4, 5)
        for cam, joints in (
            ("cam_high", list(range(14))),
            ("cam_left_wrist", list(range(6))),
            ("cam_right_wrist", list(range(7, 13))),
        ):
            ds = f[f"observations/images/{cam}"]
            change = np.array(
                [
                    np.abs(
                        decode_jpeg(ds[t].tobytes()).astype(np.float32) - decode_jpeg(ds[t + 4].tobytes())
                    ).mean()
                    for t in steps
                ]
            )
            motion = np.array(
                [
                    np.abs(qpos[t + 4, joints] - qpos[t, joints]).sum() + 0.08 * np.abs(base[t : t + 4]).sum()
                    for t in steps
                ]
            )
            rho = np.corrcoef(_ranks(change), _ranks(motion))[0, 1]
            lo, hi = np.quantile(motion, [0.2, 0.8])
            still, moving = np.median(change[motion <= lo]), np.median(change[motion >= hi])
            assert rho > 0.5, f"{cam}: image change barely follows motion (rank correlation {rho:.2f})"
            assert moving > 4 * still, f"{cam}: moving {moving:.2f} vs still {still:.2f}"


def test_inverse_kinematics_round_trips():
    rng = np.random.default_rng(0)
    for _ in range(50):
        target = np.array([rng.uniform(0.2, 0.45), rng.uniform(-0.2, 0.2), rng.uniform(-0.05, 0.15)])
        yaw = rng.uniform(-1, 1)
        pose = forward(inverse_pointing_down(target, yaw))
        np.testing.assert_allclose(pose.tip, target, atol=1e-9)
        np.testing.assert_allclose(pose.hand[:, 0], [0, 0, -1], atol=1e-9)
    with pytest.raises(ValueError, match="out of the arm's reach"):
        inverse_pointing_down(np.array([2.0, 0, 0]), 0.0)
