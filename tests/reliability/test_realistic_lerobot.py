"""LeRobot datasets as real ones come (issue 18, "correct on realistic data"): each case asserts the
OUTPUT the reader gives (episode ids, dim order, success, pixel colours) or the exact error, never just
"it did not crash". Datasets are tiny and read with list_episodes + read_episode directly."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from realistic_lerobot_kit import (
    DIMS,
    FRAMES,
    delete_episode,
    dim_values,
    edit_data,
    edit_info,
    open_dataset,
    read_rows,
    write_dataset,
)

from vlamix.config import ConfigError
from vlamix.schemas.frame import frame_key
from vlamix.schemas.quarantine import BadRecord
from vlamix.transforms.image import decode_jpeg

SHUFFLED = ["gripper", "elbow", "waist", "wrist_rotate", "shoulder", "wrist_angle", "forearm_roll"]


def _state(rows: list[dict]) -> np.ndarray:
    return np.asarray([r["state"] for r in rows], np.float32)


def _action(rows: list[dict]) -> np.ndarray:
    return np.asarray([r["action"] for r in rows], np.float32)


# ------------------------------------------------------------------------------ 1. identity by episode_index


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_a_deleted_demo_leaves_the_other_episodes_their_own_index(tmp_path, version):
    """Episodes 0, 2, 3 (1 deleted): each keeps its episode_index in the ref, the rows and the keys, and
    carries its own data (not its neighbour's)."""
    root = write_dataset(tmp_path / "ds", version, episodes=4)
    delete_episode(root, 1)
    src, emb, refs = open_dataset(tmp_path, root)
    assert [(r.index, r.record, r.source_file) for r in refs] == [
        (e, e, f"ds#episode_{e:06d}") for e in (0, 2, 3)
    ]
    for ref in refs:
        rows = read_rows(ref, src, emb)
        assert [r["episode"] for r in rows] == [ref.index] * FRAMES
        assert [r["key"] for r in rows] == [frame_key("ds", ref.index, i) for i in range(FRAMES)]
        np.testing.assert_allclose(_state(rows), dim_values(ref.index, DIMS), atol=1e-6)
        assert rows[0]["task"] == f"task {ref.index}"


def test_an_episode_index_listed_twice_is_a_config_error(tmp_path):
    root = write_dataset(tmp_path / "ds", episodes=2)
    path = root / "meta/episodes.jsonl"
    path.write_text(path.read_text().replace('"episode_index": 1', '"episode_index": 0'))
    with pytest.raises(
        ConfigError, match=r"episode_index 0 is listed twice \(meta/episodes.jsonl line 1 and"
    ):
        open_dataset(tmp_path, root)


# ------------------------------------------------------------------------------- 2. dims by name


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_dims_stored_in_another_order_come_out_in_the_specs_order(tmp_path, version):
    root = write_dataset(tmp_path / "ds", version, episodes=2, names=SHUFFLED)
    src, emb, refs = open_dataset(tmp_path, root)
    rows = read_rows(refs[1], src, emb)
    np.testing.assert_allclose(_state(rows), dim_values(1, DIMS), atol=1e-6)
    np.testing.assert_allclose(_action(rows), dim_values(1, DIMS), atol=1e-6)
    assert rows[3]["state"][6] == pytest.approx(1 + 0.03 + 0.6)  # the gripper, stored first, is last


def test_v20_motors_mapping_of_names_is_read_by_name(tmp_path):
    """v2.0-style `names: {"motors": [...]}`."""
    root = write_dataset(tmp_path / "ds", episodes=1, names=SHUFFLED)

    def v20(info: dict) -> None:
        info["codebase_version"] = "v2.0"
        for col in ("observation.state", "action"):
            info["features"][col]["names"] = {"motors": SHUFFLED}

    edit_info(root, v20)
    src, emb, refs = open_dataset(tmp_path, root)
    np.testing.assert_allclose(_state(read_rows(refs[0], src, emb)), dim_values(0, DIMS), atol=1e-6)


def test_generic_names_that_are_not_the_specs_are_a_config_error_listing_both(tmp_path):
    motors = [f"motor_{k}" for k in range(7)]
    root = write_dataset(tmp_path / "ds", episodes=1)
    edit_info(root, lambda info: info["features"]["observation.state"].update(names=motors))
    with pytest.raises(ConfigError) as e:
        open_dataset(tmp_path, root)
    msg = str(e.value)
    assert str(root / "meta/info.json") in msg
    assert f"the state columns ['observation.state'] name their dims {motors}" in msg
    assert f"the embodiment spec sim_arm6_30hz names its state dims {DIMS}" in msg
    assert "rename the spec's dims" in msg and "`keys: {state: [...]}`" in msg


def test_a_dim_missing_by_name_is_a_config_error_naming_it(tmp_path):
    names = [*DIMS[:6], "gripper_width"]
    root = write_dataset(tmp_path / "ds", episodes=1, names=names)
    with pytest.raises(
        ConfigError, match=r"in the spec only: \['gripper'\]; in the data only: \['gripper_width'\]"
    ):
        open_dataset(tmp_path, root)


def test_unnamed_dims_are_taken_by_position(tmp_path):
    root = write_dataset(tmp_path / "ds", episodes=1)
    edit_info(root, lambda info: info["features"]["observation.state"].update(names=None))
    src, emb, refs = open_dataset(tmp_path, root)
    np.testing.assert_allclose(_state(read_rows(refs[0], src, emb)), dim_values(0, DIMS), atol=1e-6)


def test_keys_columns_are_concatenated_with_their_names_then_ordered_by_the_spec(tmp_path):
    """`keys: {state: [observation.gripper, observation.joints]}`: gripper first in the data, last in
    the spec."""
    root = write_dataset(tmp_path / "ds", episodes=1)

    def split(t: pa.Table) -> pa.Table:
        state = np.asarray(t.column("observation.state").to_pylist(), np.float32)
        t = t.append_column("observation.joints", pa.array(state[:, :6].tolist(), pa.list_(pa.float32())))
        return t.append_column("observation.gripper", pa.array(state[:, 6].tolist(), pa.float32()))

    edit_data(root, 0, split)

    def features(info: dict) -> None:
        f = info["features"]
        f["observation.joints"] = {"dtype": "float32", "shape": [6], "names": DIMS[:6]}
        f["observation.gripper"] = {"dtype": "float32", "shape": [1], "names": ["gripper"]}

    edit_info(root, features)
    keys = {"state": ["observation.gripper", "observation.joints"]}
    src, emb, refs = open_dataset(tmp_path, root, keys=keys)
    np.testing.assert_allclose(_state(read_rows(refs[0], src, emb)), dim_values(0, DIMS), atol=1e-6)


# ------------------------------------------------------------------------------- 3. success per frame


def _next_success(t: pa.Table) -> pa.Table:
    flags = [False] * (t.num_rows - 1) + [True]  # LeRobot: true at the last frame only
    return t.append_column("next.success", pa.array(flags, pa.bool_()))


@pytest.mark.parametrize(
    ("setting", "want"), [("next.success", True), ({"field": "next.success", "reduce": "first"}, False)]
)
def test_success_true_only_at_the_last_frame_is_reduced_by_the_rule(tmp_path, setting, want):
    root = write_dataset(tmp_path / "ds", episodes=1)
    edit_data(root, 0, _next_success)
    edit_info(
        root, lambda i: i["features"].update({"next.success": {"dtype": "bool", "shape": [1], "names": None}})
    )
    src, emb, refs = open_dataset(tmp_path, root, success=setting)
    assert {r["success"] for r in read_rows(refs[0], src, emb)} == {want}


def test_a_success_field_the_dataset_lacks_is_a_config_error(tmp_path):
    root = write_dataset(tmp_path / "ds", episodes=1)
    with pytest.raises(ConfigError, match=r"`success` names 'next.success', which is neither a feature"):
        open_dataset(tmp_path, root, success="next.success")


# ------------------------------------------------------------------------------------------ 4. rates


def test_fps_other_than_the_specs_control_rate_is_a_config_error(tmp_path):
    root = write_dataset(tmp_path / "ds", episodes=1)
    edit_info(root, lambda info: info.update(fps=15))
    with pytest.raises(ConfigError) as e:
        open_dataset(tmp_path, root)
    assert str(e.value).startswith(
        f"{root / 'meta/info.json'}: fps is 15 Hz, the embodiment spec sim_arm6_30hz says control_rate_hz 30"
    )


def test_an_episode_recorded_at_another_rate_is_quarantined_alone(tmp_path):
    root = write_dataset(tmp_path / "ds", episodes=2)

    def at_15hz(t: pa.Table) -> pa.Table:
        i = t.schema.get_field_index("timestamp")
        return t.set_column(i, "timestamp", pa.array(np.arange(t.num_rows) / 15.0, pa.float32()))

    edit_data(root, 1, at_15hz)
    src, emb, refs = open_dataset(tmp_path, root)
    assert len(read_rows(refs[0], src, emb)) == FRAMES
    with pytest.raises(BadRecord) as e:
        read_rows(refs[1], src, emb)
    rec = e.value.record
    assert (rec.episode, rec.field) == (1, "timestamp")
    assert rec.reason.startswith(
        "timestamps step by 66.67 ms in the median (15 Hz), meta/info.json says fps 30 (33.33 ms)"
    )


# ----------------------------------------------------------------------------------------- 5. cameras


def test_two_cameras_on_one_slot_are_a_config_error_naming_both(tmp_path):
    root = write_dataset(tmp_path / "ds", episodes=1)
    with pytest.raises(ConfigError, match=r"cameras 'top' and 'wrist' both map to slot 'base_0'"):
        open_dataset(tmp_path, root, keys={"cameras": {"wrist": "base_0"}})


def test_an_unknown_camera_is_a_config_error_listing_the_known_ones(tmp_path):
    root = write_dataset(tmp_path / "ds", episodes=1)
    side = {"dtype": "image", "shape": [32, 32, 3], "names": ["height", "width", "channels"]}
    edit_info(root, lambda info: info["features"].update({"observation.images.side": side}))
    with pytest.raises(
        ConfigError, match=r"unknown camera 'side'.*\(known camera names: \['top', 'wrist'\]\)"
    ):
        open_dataset(tmp_path, root)


@pytest.mark.parametrize(("order", "want"), [("bgr", (255, 0, 0)), ("rgb", (0, 0, 255))])
def test_a_bgr_logged_camera_comes_out_rgb(tmp_path, order, want):
    """A red scene logged blue-first (OpenCV) is stored as (0, 0, 255): `channel_order: bgr` makes it red
    again; without it, it stays blue."""
    root = write_dataset(tmp_path / "ds", episodes=1, color=(0, 0, 255))
    keys = {"cameras": {"top": {"slot": "base_0", "channel_order": order}}}
    src, emb, refs = open_dataset(tmp_path, root, keys=keys)
    rows = read_rows(refs[0], src, emb)
    pixel = decode_jpeg(rows[4]["image_base_0"])[112, 112].astype(int)
    assert np.abs(pixel - want).max() < 40, pixel
    wrist = decode_jpeg(rows[4]["image_left_wrist"])[112, 112].astype(int)  # not flipped: no key says so
    assert np.abs(wrist - (0, 0, 255)).max() < 40, wrist


# ------------------------------------------------------------------------------- 6. values as they are


@pytest.mark.parametrize(
    ("column", "reason"),
    [
        (pa.array([[True] * 7] * FRAMES, pa.list_(pa.bool_())), "column 'observation.state' holds booleans"),
        (pa.array(["0.1,0.2"] * FRAMES), "column 'observation.state' row 0 is '0.1,0.2', not numbers"),
    ],
)
def test_state_of_bools_or_texts_is_refused_not_converted(tmp_path, column, reason):
    root = write_dataset(tmp_path / "ds", episodes=1)
    edit_data(
        root,
        0,
        lambda t: t.set_column(t.schema.get_field_index("observation.state"), "observation.state", column),
    )
    src, emb, refs = open_dataset(tmp_path, root)
    with pytest.raises(BadRecord) as e:
        read_rows(refs[0], src, emb)
    assert e.value.record.reason.startswith(reason) and e.value.record.field == "observation.state"


def test_a_task_that_is_a_number_is_refused_not_turned_into_text(tmp_path):
    root = write_dataset(tmp_path / "ds", episodes=1)
    (root / "meta/tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": 5}) + "\n")
    src, emb, refs = open_dataset(tmp_path, root)
    with pytest.raises(BadRecord) as e:
        read_rows(refs[0], src, emb)
    rec = e.value.record
    assert (rec.reason, rec.field, rec.frame) == (
        "the text of task_index 0 in meta/tasks.jsonl is int 5, not text",
        "task",
        0,
    )


def test_task_text_whitespace_is_collapsed(tmp_path):
    root = write_dataset(tmp_path / "ds", "v3.0", episodes=1, tasks=lambda k: "  pick up\n the  cup ")
    src, emb, refs = open_dataset(tmp_path, root)
    assert {r["task"] for r in read_rows(refs[0], src, emb)} == {"pick up the cup"}


# ------------------------------------------------------------------------------------------- 7. no task


def test_an_episode_without_an_instruction_is_quarantined_with_the_fix(tmp_path):
    root = write_dataset(tmp_path / "ds", episodes=1, tasks=lambda k: "")
    src, emb, refs = open_dataset(tmp_path, root)
    with pytest.raises(BadRecord) as e:
        read_rows(refs[0], src, emb)
    rec = e.value.record
    assert (rec.field, rec.frame) == ("task", 0)
    assert rec.reason.startswith(
        "frame 0 has no instruction (a null task_index, or an empty task in meta/tasks.jsonl) and the sources file gives "
        "this dataset no `task:`: set `task:`"
    )


def test_the_sources_files_task_fills_an_episode_without_one(tmp_path):
    root = write_dataset(tmp_path / "ds", episodes=1, tasks=lambda k: "")
    src, emb, refs = open_dataset(tmp_path, root, task="stack the blocks")
    assert {r["task"] for r in read_rows(refs[0], src, emb)} == {"stack the blocks"}


def test_without_task_index_the_episodes_one_listed_task_is_used(tmp_path):
    root = write_dataset(tmp_path / "ds", episodes=2)
    edit_data(root, 1, lambda t: t.drop_columns(["task_index"]))
    src, emb, refs = open_dataset(tmp_path, root)
    assert {r["task"] for r in read_rows(refs[1], src, emb)} == {"task 1"}
