"""Each transform beside its inverse: round trips, and the whole chain back to native values."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from vlamix.schemas.embodiment import load_embodiment, shipped_embodiments
from vlamix.transforms.chain import apply, build_chain, stats_chain
from vlamix.transforms.chunk import ChunkActions
from vlamix.transforms.features import written
from vlamix.transforms.gripper import GripperToClosed
from vlamix.transforms.image import ResizeWithPad
from vlamix.transforms.native import inverse_chain
from vlamix.transforms.native import native_chunk as to_native_chunk
from vlamix.transforms.native import native_state as to_native_state
from vlamix.transforms.normalize import QuantileNormalize, ZScoreNormalize
from vlamix.transforms.pad import PadDims, PadSteps
from vlamix.transforms.prompt import StatePrompt, state_bins
from vlamix.transforms.stats import compute_stats

rng = np.random.default_rng(0)


def test_gripper_sense_round_trip_and_direction():
    t = GripperToClosed("state", (1,), open=1.0, closed=0.0)
    x = np.array([[0.3, 1.0], [0.3, 0.0], [0.3, 0.25]], dtype=np.float32)
    y = t({"state": x})["state"]
    np.testing.assert_allclose(y[:, 1], [0.0, 1.0, 0.75])
    np.testing.assert_array_equal(y[:, 0], x[:, 0])
    np.testing.assert_allclose(t.inverse()({"state": y})["state"], x, atol=1e-7)
    assert x[2, 1] == np.float32(0.25)  # the input is never edited in place


def test_normalize_round_trip_and_quantile_mapping():
    x = rng.normal(size=(1000, 5)) * [1, 10, 0.1, 3, 1] + [0, 5, -2, 1, 0]
    st = compute_stats(x)
    t = QuantileNormalize("a", tuple(st.percentiles["q01"]), tuple(st.percentiles["q99"]))
    y = t({"a": x})["a"]
    np.testing.assert_allclose(np.percentile(y, [1, 99], axis=0), [[-1] * 5, [1] * 5], atol=1e-3)
    np.testing.assert_allclose(t.inverse()({"a": y})["a"], x, rtol=1e-5, atol=1e-5)


def test_chunk_repeats_last_and_masks():
    ep = np.arange(12, dtype=np.float32).reshape(6, 2)
    s = ChunkActions(4)({"episode_actions": ep, "frame": 4})
    np.testing.assert_array_equal(s["actions"], ep[[4, 5, 5, 5]])
    np.testing.assert_array_equal(s["action_is_pad"], [False, False, True, True])
    np.testing.assert_array_equal(ChunkActions(4).inverse()(s)["action"], ep[4])


def test_pad_round_trips():
    x = rng.normal(size=(10, 7)).astype(np.float32)
    s = PadSteps(50)({"actions": x, "action_is_pad": np.zeros(10, bool)})
    assert (
        s["actions"].shape == (50, 7) and s["action_is_pad"][10:].all() and not s["action_is_pad"][:10].any()
    )
    s = PadDims("actions", "action_dim_mask", 32)(s)
    assert (
        s["actions"].shape == (50, 32) and s["action_dim_mask"].sum() == 7 and not s["actions"][:, 7:].any()
    )
    back = PadSteps(50).inverse(10)(PadDims("actions", "action_dim_mask", 32).inverse(7)(s))
    np.testing.assert_array_equal(back["actions"], x)


def test_resize_with_pad_keeps_content_and_unpads():
    img = np.zeros((120, 160, 3), np.uint8)
    img[40:80, 60:100] = 200
    t = ResizeWithPad(224)
    out = t(img)
    assert out.shape == (224, 224, 3) and out[:20].max() == 0 and out[-20:].max() == 0
    back = t.unpad(out, 120, 160)
    assert np.abs(back.astype(int) - img).mean() < 3


def test_state_bins_match_openpi_definition():
    s = np.array([-1.0, -0.999, 0.0, 0.999, 1.0, 3.0, -7.0])
    np.testing.assert_array_equal(state_bins(s), [0, 0, 128, 255, 255, 255, 0])
    p = StatePrompt("joint")({"state": np.array([0.0, 1.0]), "task": "  pick_up the\ncup "})
    assert p["prompt"] == "Task: pick up the cup, Control: joint, State: 128 255;\nAction: "


def test_stats_are_exact():
    x = rng.normal(size=(777, 3))
    st = compute_stats(x)
    np.testing.assert_allclose(st.percentiles["q02"], np.percentile(x, 2, axis=0), rtol=1e-6)
    np.testing.assert_allclose(st.std, x.std(axis=0), rtol=1e-6)
    assert st.count == 777 and sum(st.histograms[0]["counts"]) == 777
    with pytest.raises(ValueError, match="non-empty"):
        compute_stats(np.zeros((0, 3)))


DELTA_SPEC = """name: delta_arm
description: an arm trained on end-effector deltas
control_rate_hz: 10
control_mode: ee
rotation: euler
gripper: {open: 0.0, closed: 1.0}
state:
  - {name: x, kind: ee_position, unit: m}
  - {name: yaw, kind: ee_rotation, unit: rad}
  - {name: gripper, kind: gripper, unit: normalized}
action:
  - {name: x, kind: ee_position, unit: m, delta: true}
  - {name: yaw, kind: ee_rotation, unit: rad, delta: true}
  - {name: gripper, kind: gripper, unit: normalized}
cameras: {front: base_0}
"""


def _embodiment(name: str, tmp_path):
    if name == "delta_arm":
        (tmp_path / "delta_arm.yaml").write_text(DELTA_SPEC)
        return load_embodiment(tmp_path / "delta_arm.yaml")
    return load_embodiment(name)


def _episode(emb, t: int = 300):
    """Native actions and states of a `t`-frame episode, and statistics over exactly what normalization
    sees: every step of every chunk, deltas included."""
    actions = rng.uniform(-1, 1, size=(t, emb.action_dim)).astype(np.float32)
    grip_a = [i for i, d in enumerate(emb.action) if d.kind == "gripper"]
    actions[:, grip_a] = rng.uniform(0, 1, size=(t, len(grip_a)))
    state = rng.uniform(-1, 1, size=(t, emb.state_dim)).astype(np.float32)
    grip_s = [i for i, d in enumerate(emb.state) if d.kind == "gripper"]
    state[:, grip_s] = rng.uniform(0, 1, size=(t, len(grip_s)))
    pre = apply(stats_chain(emb), {"state": state, "episode_actions": actions, "frame": np.arange(t)})
    return (
        actions,
        state,
        compute_stats(pre["state"]),
        compute_stats(pre["actions"].reshape(-1, emb.action_dim)),
    )


@pytest.mark.parametrize("normalization", ["quantile", "zscore"])
@pytest.mark.parametrize("name", [*shipped_embodiments(), "delta_arm"])
def test_whole_chain_inverts_to_native_values(name, normalization, tmp_path):
    emb = _embodiment(name, tmp_path)
    t = 300
    actions, state, ss, sa = _episode(emb, t)
    chain = build_chain(emb, ss, sa, normalization)
    frame = t - 20  # near the end: the chunk runs past it
    out = apply(chain, {"state": state[frame], "episode_actions": actions, "frame": frame, "task": "x"})
    assert out["actions"].shape == (50, 32) and out["state"].shape == (32,)
    h = emb.chunk_horizon
    assert out["action_is_pad"].sum() == 50 - min(h, 20) and out["action_dim_mask"].sum() == emb.action_dim
    # The inverse, in reverse order: unpad -> unnormalize -> absolute -> native gripper sense.
    by_type: dict[str, list] = {}
    for c in chain:
        by_type.setdefault(type(c).__name__, []).append(c)
    pad_state, pad_actions = by_type["PadDims"]
    norm_state, norm_actions = [c for c in chain if "Normalize" in type(c).__name__]
    inv = [
        pad_actions.inverse(emb.action_dim),
        pad_state.inverse(emb.state_dim),
        by_type["PadSteps"][0].inverse(h),
        norm_actions.inverse(),
        norm_state.inverse(),
    ]
    inv += [c.inverse() for c in by_type.get("DeltaActions", [])]
    back = apply(inv, out)
    grips = {c.key: c for c in by_type.get("GripperToClosed", [])}
    native_back = (
        grips["episode_actions"].inverse()({"episode_actions": back["actions"]})["episode_actions"]
        if grips
        else back["actions"]
    )
    native_state = grips["state"].inverse()({"state": back["state"]})["state"] if grips else back["state"]
    native_chunk = actions[np.minimum(np.arange(frame, frame + h), t - 1)]
    diff = native_back - native_chunk
    rot = [i for i, d in enumerate(emb.action) if d.delta and d.kind == "ee_rotation"]
    diff[:, rot] = np.angle(np.exp(1j * diff[:, rot]))  # rotations come back modulo 2 pi
    np.testing.assert_allclose(diff, 0, atol=2e-5)
    np.testing.assert_allclose(native_state, state[frame], atol=2e-5)
    # the same through transforms/native.py, as `inspect --preview` and `predict` use it: from the
    # sample's own state, and from a native state given by the robot
    got_state = to_native_state(chain, emb, out["state"])
    np.testing.assert_allclose(got_state, state[frame], atol=2e-5)
    for given in (got_state, state[frame]):
        got = to_native_chunk(chain, emb, out["actions"], given, out["action_is_pad"])
        assert got.shape == (min(h, 20), emb.action_dim)
        diff = got - native_chunk[: min(h, 20)]
        diff[:, rot] = np.angle(np.exp(1j * diff[:, rot]))
        np.testing.assert_allclose(diff, 0, atol=5e-5)


def test_delta_wraps_rotations_and_inverts():
    from vlamix.transforms.delta import DeltaActions

    t = DeltaActions(dims=(0, 1), state_dims=(0, 1), wrap=(1,))
    sample = {"actions": np.array([[0.5, 3.0], [0.7, -3.0]]), "state": np.array([0.2, -3.0])}
    out = t(sample)
    np.testing.assert_allclose(out["actions"][:, 0], [0.3, 0.5], atol=1e-6)
    np.testing.assert_allclose(out["actions"][:, 1], [6.0 - 2 * np.pi, 0.0], atol=1e-6)  # wrapped, not 6.0
    back = t.inverse()(out)
    np.testing.assert_allclose(np.angle(np.exp(1j * (back["actions"] - sample["actions"]))), 0, atol=1e-6)
    assert sample["actions"][0, 0] == 0.5  # the input is never edited in place


def test_native_euler_deltas_are_wrapped():
    from vlamix.transforms.chain import stats_chain
    from vlamix.transforms.rotation import WrapRotations

    emb = load_embodiment("widowx_bridge")
    wraps = [t for t in stats_chain(emb) if isinstance(t, WrapRotations)]
    assert len(wraps) == 1 and wraps[0].dims == (3, 4, 5)
    actions = np.zeros((4, 7), np.float32)
    actions[:, 5] = [0.1, 6.2, -6.2, 3.0]
    out = wraps[0]({"episode_actions": actions})["episode_actions"]
    np.testing.assert_allclose(out[:, 5], [0.1, 6.2 - 2 * np.pi, -6.2 + 2 * np.pi, 3.0], atol=1e-6)
    assert wraps[0].inverse()({"episode_actions": out})["episode_actions"] is not None


@pytest.mark.parametrize("name", [*shipped_embodiments(), "delta_arm"])
def test_the_inverse_chain_is_the_forward_chains_inverses_reversed(name, tmp_path):
    """transforms/native.py derives its inverse from build_chain: every forward transform that writes
    the actions (the episode's before the chunk), last first, undone by its own inverse."""
    emb = _embodiment(name, tmp_path)
    _, _, ss, sa = _episode(emb)
    chain = build_chain(emb, ss, sa)
    real = {"actions": emb.action_dim, "state": emb.state_dim, "steps": emb.chunk_horizon}
    inverse = inverse_chain(chain, "actions", real)
    positions = [i for i, _ in inverse]
    writers = [
        i
        for i, t in enumerate(chain)
        if {"actions", "episode_actions"} & set(written(t)) and not isinstance(t, ChunkActions)
    ]
    assert positions == writers[::-1]
    for i, inv in inverse:
        forward = chain[i]
        if isinstance(forward, (PadDims, PadSteps)):
            assert inv == forward.inverse(real["steps"] if isinstance(forward, PadSteps) else emb.action_dim)
        elif getattr(forward, "key", None) == "episode_actions":  # before the chunk: same steps, on a chunk
            assert inv == dataclasses.replace(forward.inverse(), key="actions")
        else:
            assert inv == forward.inverse()
    state_inverse = inverse_chain(chain, "state", real)
    assert [i for i, _ in state_inverse] == [i for i, t in enumerate(chain) if "state" in written(t)][::-1]


def test_a_transform_added_to_the_chain_is_undone_without_touching_native_py(tmp_path):
    """The inverse follows the chain: one more actions transform in the forward chain, and native_chunk
    undoes it too."""
    emb = _embodiment("delta_arm", tmp_path)
    actions, state, ss, sa = _episode(emb)
    chain = [*build_chain(emb, ss, sa), ZScoreNormalize("actions", (0.5,) * 32, (2.0,) * 32)]
    out = apply(chain, {"state": state[10], "episode_actions": actions, "frame": 10, "task": "x"})
    got = to_native_chunk(chain, emb, out["actions"], state[10], out["action_is_pad"])
    diff = got - actions[10 : 10 + emb.chunk_horizon]
    diff[:, 1] = np.angle(np.exp(1j * diff[:, 1]))  # yaw, a delta rotation: back modulo 2 pi
    np.testing.assert_allclose(diff, 0, atol=5e-5)


def test_native_py_builds_no_transform_itself():
    """transforms/native.py lists no transforms by hand: it names a transform class only to recognize
    one (isinstance), never to build one; it inverts the chain it is given."""
    path = Path(__file__).resolve().parents[2] / "transforms" / "native.py"
    tree = ast.parse(path.read_text())
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("vlamix.transforms.")
        and node.module.rsplit(".", 1)[1] not in ("chain", "features", "stats")  # no transforms there
        for alias in node.names
    }
    classes = {name for name in imported if name[:1].isupper()}
    recognized = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance"
        for n in ast.walk(node.args[1])
    }
    built = [
        f"native.py:{node.lineno} {node.id}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and node.id in classes and id(node) not in recognized
    ]
    assert not built, f"native.py builds transforms by hand: {built}; derive them from the forward chain"
