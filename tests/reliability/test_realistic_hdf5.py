"""Realistic ALOHA / Mobile-ALOHA HDF5 variants (issue 18): small real files written with h5py the way
other recorders write them, read with `list_episodes` + `read_episode`; each test asserts the output
(episode ids in the frame keys, the task of every frame, success, pixel colours, the error text)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import as_written

from vlamix.config import ConfigError
from vlamix.schemas.quarantine import BadRecord
from vlamix.sources.aloha_hdf5 import list_episodes, read_episode
from vlamix.sources.config import load_sources
from vlamix.transforms.image import decode_jpeg

RED = (200, 30, 30)
ONE_DIM = """\
name: one_joint
description: a single joint driven at 50 Hz
control_rate_hz: 50
control_mode: joint
state: [{name: joint, kind: joint_position, unit: rad}]
action: [{name: joint, kind: joint_position, unit: rad}]
cameras: {cam_high: base_0}
"""


def _write(
    path: Path,
    frames: int = 4,
    cameras: dict[str, tuple[int, int, int]] | None = None,
    attrs: dict | None = None,
    datasets: dict | None = None,
    width: int = 14,
) -> Path:
    """An ALOHA episode as its recorder writes one: qpos, action, raw (T, H, W, 3) cameras, attributes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    qpos = np.tile(np.arange(frames, dtype=np.float64)[:, None] * 0.01, (1, width))
    with h5py.File(path, "w") as f:  # one dim: stored (T,), as a 1-D recorder writes it
        f.create_dataset("observations/qpos", data=qpos[:, 0] if width == 1 else qpos)
        f.create_dataset("action", data=(qpos[:, 0] if width == 1 else qpos) + 0.005)
        for name, colour in (cameras or {"cam_high": RED}).items():
            f.create_dataset(
                f"observations/images/{name}", data=np.full((frames, 16, 16, 3), colour, np.uint8)
            )
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        for key, value in (datasets or {}).items():
            f.create_dataset(key, data=value)
    return path


def _sources(root: Path, entry: str = "", embodiment: str = "aloha", path: str = "eps"):
    (root / "sources.yaml").write_text(
        "datasets:\n"
        f"  - {{name: act, kind: ME, format: aloha_hdf5, path: '{path}', embodiment: {embodiment}{entry}}}\n"
    )
    sources = load_sources(root / "sources.yaml")
    return sources, sources.datasets[0]


def _read(root: Path, entry: str = "", embodiment: str = "aloha") -> list[list[dict]]:
    sources, src = _sources(root, entry, embodiment)
    emb = sources.embodiment(src)
    return [as_written(read_episode(ref, src, emb)) for ref in list_episodes(sources, src)]


def _pixel(row: dict, slot: str = "base_0") -> tuple[int, ...]:
    return tuple(int(v) for v in decode_jpeg(row[f"image_{slot}"])[112, 112])


# 1. Instructions read as text, never as str() of an array.


@pytest.mark.parametrize(
    "stored",
    [
        np.array([b"pick up the red cup"]),  # (1,) fixed-length bytes
        np.array([b"pick up the red cup"] * 4),  # (T,) the same text every step
        np.array(["pick up the red cup"] * 4, dtype=h5py.string_dtype()),  # (T,) variable-length
    ],
    ids=["one_bytes", "per_step_same", "per_step_vlen"],
)
def test_instruction_dataset_becomes_one_text(tmp_path, stored):
    _write(tmp_path / "eps/episode_0.hdf5", datasets={"language_instruction": stored})
    (rows,) = _read(tmp_path, ", keys: {instruction: language_instruction}")
    assert [r["task"] for r in rows] == ["pick up the red cup"] * 4


def test_instruction_that_changes_within_the_episode_stays_per_frame(tmp_path):
    steps = np.array([b"", b"open the drawer", b"", b"put the cup in"], dtype=object)
    _write(
        tmp_path / "eps/episode_0.hdf5",
        datasets={"instruction": steps.astype(h5py.string_dtype())},
    )
    (rows,) = _read(tmp_path, ", keys: {instruction: instruction}")
    # a step without text is under the instruction in force (before any: the first one given)
    assert [r["task"] for r in rows] == [
        "open the drawer",
        "open the drawer",
        "open the drawer",
        "put the cup in",
    ]


@pytest.mark.parametrize(
    "value",
    [
        b"fold the towel",
        "fold the towel",
        np.bytes_(b"fold the towel"),
        np.array(b"fold the towel"),  # 0-d
        np.array([b"fold the towel"]),  # (1,)
    ],
    ids=["bytes", "str", "numpy_bytes", "zero_d", "one"],
)
def test_instruction_attribute_in_every_form(tmp_path, value):
    _write(tmp_path / "eps/episode_0.hdf5", attrs={"task": value})
    (rows,) = _read(tmp_path, ", keys: {instruction: task}")
    assert {r["task"] for r in rows} == {"fold the towel"}


def test_numeric_instruction_is_refused(tmp_path):
    _write(tmp_path / "eps/episode_0.hdf5", attrs={"task": 7})
    with pytest.raises(BadRecord) as info:
        _read(tmp_path, ", keys: {instruction: task}")
    rec = info.value.record
    assert (rec.source_file, rec.field) == ("eps/episode_0.hdf5", "task")
    assert "instruction 'task' is int 7, not text" in rec.reason


# 2. Identity: the file's own number.


def test_episode_ids_are_the_file_numbers(tmp_path):
    for k in (0, 2, 3):  # episode_1 was deleted: the others keep their ids
        _write(tmp_path / f"eps/episode_{k}.hdf5", frames=2)
    episodes = _read(tmp_path, ", task: tidy up")
    assert [[r["key"] for r in rows] for rows in episodes] == [
        ["act/000000/000000", "act/000000/000001"],
        ["act/000002/000000", "act/000002/000001"],
        ["act/000003/000000", "act/000003/000001"],
    ]
    assert [rows[0]["episode"] for rows in episodes] == [0, 2, 3]


def test_episode_ids_fall_back_to_positions_when_numbers_repeat(tmp_path):
    _write(tmp_path / "eps/episode_1.hdf5", frames=1)
    _write(tmp_path / "eps/take_1.hdf5", frames=1)  # two recorders, both numbering from 1
    sources, src = _sources(tmp_path, ", task: tidy up")
    refs = list_episodes(sources, src)
    assert [(r.source_file, r.index) for r in refs] == [("eps/episode_1.hdf5", 0), ("eps/take_1.hdf5", 1)]


# 3. Success reduced by the declared rule.


def test_success_from_a_per_step_dataset_and_an_attribute(tmp_path):
    _write(tmp_path / "eps/episode_0.hdf5", datasets={"reward": np.array([0, 0, 0, 1.0])})
    _write(tmp_path / "eps/episode_1.hdf5", datasets={"reward": np.array([0, 1.0, 0, 0])})
    (a, b) = _read(tmp_path, ", task: t, success: reward")  # last step, the default
    assert (a[0]["success"], b[0]["success"]) == (True, False)
    (a, b) = _read(tmp_path, ", task: t, success: {field: reward, reduce: any}")
    assert (a[0]["success"], b[0]["success"]) == (True, True)
    for f in (tmp_path / "eps").iterdir():
        f.unlink()
    _write(tmp_path / "eps/episode_0.hdf5", attrs={"success": b"true"})
    _write(tmp_path / "eps/episode_1.hdf5", attrs={"success": np.bytes_(b"no")})
    (a, b) = _read(tmp_path, ", task: t, success: success")
    assert (a[0]["success"], b[0]["success"]) == (True, False)


# 4. Rates measured from the file's timestamps.


def test_timestamps_at_another_rate_quarantine_the_episode(tmp_path):
    _write(tmp_path / "eps/episode_0.hdf5", datasets={"observations/timestamps": np.arange(4) * 0.04})
    with pytest.raises(BadRecord) as info:
        _read(tmp_path, ", task: t")
    rec = info.value.record
    assert rec.field == "/observations/timestamps"
    assert "25 Hz" in rec.reason and "aloha says control_rate_hz 50" in rec.reason
    _write(tmp_path / "eps/episode_0.hdf5", datasets={"observations/timestamps": 1.7e9 + np.arange(4) * 0.02})
    (rows,) = _read(tmp_path, ", task: t")  # epoch seconds at 50 Hz: fine (measured in float64)
    assert [r["timestamp"] for r in rows] == pytest.approx([0, 0.02, 0.04, 0.06])


# 5. Cameras: two on one slot, channel order.


def test_two_cameras_on_one_slot_is_a_configuration_error_then_a_quarantine(tmp_path):
    both = {"cam_high": RED, "top": RED}  # the shipped spec aliases both to base_0
    _write(tmp_path / "eps/episode_0.hdf5", cameras=both)
    with pytest.raises(ConfigError, match="cameras 'cam_high' and 'top' both map to slot 'base_0'"):
        _read(tmp_path, ", task: t")
    _write(tmp_path / "eps/episode_0.hdf5")
    _write(tmp_path / "eps/episode_1.hdf5", cameras=both)  # a later file: found when it is read
    sources, src = _sources(tmp_path, ", task: t")
    first, later = list_episodes(sources, src)
    assert len(as_written(read_episode(first, src, sources.embodiment(src)))) == 4
    with pytest.raises(BadRecord, match="cameras 'cam_high' and 'top' both map to slot 'base_0'") as info:
        as_written(read_episode(later, src, sources.embodiment(src)))
    assert (info.value.record.source_file, info.value.record.episode) == ("eps/episode_1.hdf5", 1)
    (_, rows1) = _read(tmp_path, ", task: t, keys: {cameras: {top: null}}")  # the fix the error names
    assert rows1[0]["image_base_0"] is not None


def test_bgr_logged_camera_comes_out_rgb(tmp_path):
    _write(tmp_path / "eps/episode_0.hdf5", cameras={"cam_high": RED[::-1], "cam_left_wrist": RED})
    bgr = "{cam_high: {slot: base_0, channel_order: bgr}}"
    (rows,) = _read(tmp_path, f", task: t, keys: {{cameras: {bgr}}}")
    for slot in ("base_0", "left_wrist"):  # the flipped camera and an RGB one: both red
        r, g, b = _pixel(rows[0], slot)
        assert r > 170 and g < 60 and b < 60, (slot, r, g, b)


# 7. State and action are numbers.


def test_one_dim_action_and_refused_bools(tmp_path):
    (tmp_path / "one_joint.yaml").write_text(ONE_DIM)
    _write(tmp_path / "eps/episode_0.hdf5", width=1)  # qpos and action stored as (T,)
    (rows,) = _read(tmp_path, ", task: t", embodiment="one_joint.yaml")
    assert [a for r in rows for a in r["action"]] == pytest.approx([0.005, 0.015, 0.025, 0.035])
    with h5py.File(tmp_path / "eps/episode_0.hdf5", "r+") as f:
        del f["action"]
        f.create_dataset("action", data=np.array([True, False, True, True]))
    with pytest.raises(BadRecord) as info:
        _read(tmp_path, ", task: t", embodiment="one_joint.yaml")
    assert info.value.record.field == "/action"
    assert "/action holds booleans where numbers are expected" in info.value.record.reason


# 8. No task.


def test_no_task_anywhere(tmp_path):
    _write(tmp_path / "eps/episode_0.hdf5")
    with pytest.raises(ConfigError, match="neither `task:` nor `keys: {instruction: ...}`"):
        _read(tmp_path)
    _write(tmp_path / "eps/episode_0.hdf5", attrs={"task": b"   "})
    with pytest.raises(BadRecord) as info:
        _read(tmp_path, ", keys: {instruction: task}")
    assert info.value.record.reason.startswith("no task: the instruction 'task' is empty")
    assert "set `task:`" in info.value.record.reason
    (rows,) = _read(tmp_path, ", task: stack the blocks, keys: {instruction: task}")
    assert rows[0]["task"] == "stack the blocks"


def test_sources_yaml_with_bgr_in_block_style(tmp_path):
    """The same channel-order setting written as a sources file user writes it (block YAML)."""
    _write(tmp_path / "eps/episode_3.hdf5", cameras={"cam_high": RED[::-1]})
    (tmp_path / "sources.yaml").write_text(
        textwrap.dedent(
            """\
            datasets:
              - name: act
                kind: ME
                format: aloha_hdf5
                path: eps
                embodiment: aloha
                task: pick up the red cup
                keys:
                  cameras:
                    cam_high: {slot: base_0, channel_order: bgr}
            """
        )
    )
    sources = load_sources(tmp_path / "sources.yaml")
    src = sources.datasets[0]
    (ref,) = list_episodes(sources, src)
    rows = as_written(read_episode(ref, src, sources.embodiment(src)))
    assert rows[0]["key"] == "act/000003/000000" and rows[0]["task"] == "pick up the red cup"
    assert _pixel(rows[0])[0] > 170 and _pixel(rows[0])[2] < 60
