"""Rotation groups (schemas/rotation_group.py, transforms/rotation_groups.py): a source's rotations in any
representation become the spec's trained dims (Euler xyz or rot6d) and come back as the same rotations,
also near +-pi and at gimbal lock; a grouped action's delta is R_s^-1 R_a (not a difference of
components) and the chain's inverse gives the source's values back; specs that cannot work are refused."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import embodiment_from_text
from vlamix.transforms.chain import build_chain, stats_chain
from vlamix.transforms.native import native_chunk
from vlamix.transforms.rotation_groups import LoggedRotations, RelativeRotations, TrainedRotations
from vlamix.transforms.rotation_repr import SIZES, from_matrix, to_matrix
from vlamix.transforms.stats import compute_stats

SOURCE_REPRS = ["euler_xyz", "quat_xyzw", "quat_wxyz", "rotvec", "matrix", "rot6d"]


def _spec(repr_: str, train: str = "euler_xyz", delta: bool = False, extra: str = "") -> str:
    names = ["roll", "pitch", "yaw"] if train == "euler_xyz" else [f"r{i}" for i in range(6)]
    rot = "".join(
        f"  - {{name: {n}, kind: ee_rotation, unit: rad{', delta: true' if delta else ''}}}\n" for n in names
    )
    state_rot = "".join(f"  - {{name: {n}, kind: ee_rotation, unit: rad}}\n" for n in names)
    dims = list(range(3, 3 + len(names)))
    return (
        "name: rot_arm\ndescription: t\ncontrol_rate_hz: 10\ncontrol_mode: ee\n"
        "gripper: {open: 0.0, closed: 1.0}\ncameras: {cam: base_0}\n"
        "state:\n  - {name: x, kind: ee_position, unit: m}\n  - {name: y, kind: ee_position, unit: m}\n"
        f"  - {{name: z, kind: ee_position, unit: m}}\n{state_rot}  - {{name: g, kind: gripper, unit: n}}\n"
        "action:\n  - {name: x, kind: ee_position, unit: m}\n  - {name: y, kind: ee_position, unit: m}\n"
        f"  - {{name: z, kind: ee_position, unit: m}}\n{rot}  - {{name: g, kind: gripper, unit: n}}\n"
        f"rotation: {{dims: {dims}, repr: {repr_}}}\n{extra}"
    )


def _hard_matrices(n_random: int = 40) -> np.ndarray:
    """Random rotations, angles near +-pi about each axis, and pitch at +-pi/2 (gimbal lock)."""
    random = Rotation.random(n_random, random_state=3).as_matrix()
    near_pi = [
        Rotation.from_rotvec(s * a * (np.pi - e)).as_matrix()
        for a in np.eye(3)
        for s in (1, -1)
        for e in (0, 1e-6)
    ]
    lock = [
        Rotation.from_euler("xyz", [0.7, s * (np.pi / 2 - e), -1.1]).as_matrix()
        for s in (1, -1)
        for e in (0, 1e-7)
    ]
    return np.concatenate([random, np.stack(near_pi), np.stack(lock)])


@pytest.mark.parametrize("train", ["euler_xyz", "rot6d"])
@pytest.mark.parametrize("repr_", SOURCE_REPRS)
def test_logged_values_become_the_trained_dims_and_come_back(repr_, train):
    emb = embodiment_from_text(_spec(repr_, train), "spec")
    m = _hard_matrices()
    n = len(m)
    pos, grip = np.random.default_rng(0).normal(size=(n, 3)), np.random.default_rng(1).uniform(size=(n, 1))
    logged = np.concatenate([pos, from_matrix(m, repr_), grip], axis=1)
    assert logged.shape[1] == emb.as_logged().state_dim == 3 + SIZES[repr_] + 1
    spans = tuple(emb.spans("state"))
    trained = TrainedRotations("state", spans)({"state": logged})["state"]
    assert trained.shape == (n, emb.state_dim)
    np.testing.assert_allclose(trained[:, :3], pos, atol=1e-6)  # the other dims pass through, in place
    np.testing.assert_allclose(trained[:, -1], grip[:, 0], atol=1e-6)
    np.testing.assert_allclose(to_matrix(trained[:, 3:-1], train), m, atol=2e-5)  # the same rotations
    back = LoggedRotations("state", spans)({"state": trained})["state"]
    assert back.shape == logged.shape
    np.testing.assert_allclose(to_matrix(back[:, 3:-1], repr_), m, atol=2e-5)  # and back to the source's


def test_quaternions_a_little_off_are_normalized_and_far_off_ones_refused():
    emb = embodiment_from_text(_spec("quat_xyzw"), "spec")
    to_trained = TrainedRotations("state", tuple(emb.spans("state")))
    q = Rotation.from_euler("xyz", [0.1, 0.2, 0.3]).as_quat()
    rounded = np.concatenate([[0, 0, 0], q * 1.005, [0]])  # a logger that rounds: normalized
    out = to_trained({"state": rounded})["state"]
    np.testing.assert_allclose(out[3:6], [0.1, 0.2, 0.3], atol=1e-5)
    with pytest.raises(ValueError, match=r"rotation group at dims 3\.\.6 \(quat_xyzw\).*norm 1\.5"):
        to_trained({"state": np.concatenate([[0, 0, 0], q * 1.5, [0]])})


@pytest.mark.parametrize("train", ["euler_xyz", "rot6d"])
def test_a_grouped_delta_is_the_relative_rotation_and_the_inverse_gives_the_source_values(train):
    emb = embodiment_from_text(_spec("quat_wxyz", train, delta=True), "spec")
    rng = np.random.default_rng(5)
    steps = 30  # a wrist turning through yaw = pi, where component differences jump by 2 pi
    rots = Rotation.from_euler(
        "xyz", np.stack([np.full(steps, 0.3), np.linspace(-0.2, 0.4, steps), np.linspace(2.6, 3.6, steps)], 1)
    )
    quat = from_matrix(rots.as_matrix(), "quat_wxyz")
    pos = rng.normal(size=(steps, 3)).cumsum(0) * 0.01
    logged = np.concatenate([pos, quat, rng.uniform(size=(steps, 1))], axis=1)
    state_logged = np.concatenate([pos, quat, np.zeros((steps, 1))], axis=1)
    state = TrainedRotations("state", tuple(emb.spans("state")))({"state": state_logged})["state"]
    actions = TrainedRotations("action", tuple(emb.spans("action")))({"action": logged})["action"]
    chain = stats_chain(emb)
    assert any(isinstance(t, RelativeRotations) for t in chain)
    sample = {"state": state[0], "episode_actions": actions, "frame": 0}
    for t in chain:
        sample = t(sample)
    h = emb.chunk_horizon
    want = np.swapaxes(rots[0].as_matrix(), -1, -2) @ rots[:h].as_matrix()  # R_s^-1 R_a, step by step
    np.testing.assert_allclose(to_matrix(sample["actions"][:, 3:-1], train), want, atol=2e-5)
    if train == "euler_xyz":  # small relative turns, where differences of Euler angles would be ~2 pi
        assert np.abs(sample["actions"][:, 3:6]).max() < 1.0
    # the whole chain and back, as `vlamix predict` does: the source's quaternions again
    every = {"state": state, "episode_actions": actions, "frame": np.arange(steps)}
    for t in chain:  # statistics over what the chain normalizes: every frame's chunk at once
        every = t(every)
    action_stats = compute_stats(every["actions"].reshape(-1, emb.action_dim))
    full = build_chain(emb, compute_stats(state), action_stats)
    forward = {"state": state[0], "episode_actions": actions, "frame": 0, "task": "t"}
    for t in full:
        forward = t(forward)
    native = native_chunk(full, emb, forward["actions"], state[0], forward["action_is_pad"])
    out = LoggedRotations("actions", tuple(emb.spans("action")))({"actions": native})["actions"]
    np.testing.assert_allclose(to_matrix(out[:, 3:7], "quat_wxyz"), rots[:h].as_matrix(), atol=5e-3)
    np.testing.assert_allclose(out[:, :3], logged[:h, :3], atol=5e-3)


def test_the_spec_as_logged_has_the_source_values_named_by_component():
    emb = embodiment_from_text(_spec("quat_xyzw"), "spec")
    logged = emb.as_logged()
    assert [d.name for d in logged.state] == ["x", "y", "z", "qx", "qy", "qz", "qw", "g"]
    assert logged.action_dim == 8 and emb.action_dim == 7 and logged.groups == []
    assert (
        embodiment_from_text(_spec("quat_xyzw").replace("rotation:", "#"), "spec").as_logged().state_dim == 7
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("dims: [3, 4, 5]", "dims: [3, 4]"), "trains as 3 dims"),
        (("dims: [3, 4, 5]", "dims: [3, 5, 4]"), "consecutive"),
        (("dims: [3, 4, 5]", "dims: [2, 3, 4]"), "not of kind ee_rotation"),
        (("dims: [3, 4, 5]", "dims: [5, 6, 7]"), "has 7 dims"),
        (("repr: rotvec", "repr: quaternion"), "quaternion"),
        (
            (
                "{name: roll, kind: ee_rotation, unit: rad, delta: true}",
                "{name: roll, kind: ee_rotation, unit: rad}",
            ),
            "all be `delta: true` or none",
        ),
    ],
)
def test_specs_with_a_group_that_cannot_work_are_refused(change, message):
    text = _spec("rotvec", delta=True).replace(*change, 1)
    with pytest.raises(ConfigError, match=message):
        embodiment_from_text(text, "spec")


def test_a_delta_group_needs_the_same_group_in_the_state():
    text = _spec("rotvec", delta=True).replace(
        "rotation: {dims: [3, 4, 5], repr: rotvec}", "rotation: {dims: [3, 4, 5], repr: rotvec, part: action}"
    )
    with pytest.raises(ConfigError, match="the state needs the same dims"):
        embodiment_from_text(text, "spec")


def test_predict_takes_the_state_as_the_robot_logs_it():
    from vlamix.trainer.predict import _trained_state

    emb = embodiment_from_text(_spec("rotvec", "rot6d"), "spec")
    m = Rotation.from_rotvec([0.2, -1.0, 2.9])
    logged = np.array([0.1, 0.2, 0.3, *m.as_rotvec(), 0.5])
    state = _trained_state(emb, logged)
    assert state.shape == (emb.state_dim,) == (10,)
    np.testing.assert_allclose(to_matrix(state[3:9], "rot6d"), m.as_matrix(), atol=1e-6)
    with pytest.raises(ValueError, match=r"state has 10 values, rot_arm logs 7: x, y, z, rx, ry, rz, g"):
        _trained_state(emb, state)  # the trained dims are not what the robot reports
