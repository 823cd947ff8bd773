"""format: hdf5, any HDF5 layout by key mapping: one episode per file or per group (robomimic), raw and
encoded cameras, instructions as attributes or datasets, and the bad input each case refuses."""

from __future__ import annotations

import io
import json
import shutil

import h5py
import numpy as np
import pytest
from conftest import SAMPLES, as_written, ingest_cli
from PIL import Image

from vlamix.config import ConfigError
from vlamix.schemas.frame import FRAME
from vlamix.schemas.image_codec import decode_jpeg, encode_jpeg
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.sources.config import load_sources
from vlamix.sources.hdf5_keys import list_episodes, read_episode

SPEC = SAMPLES / "embodiments" / "sim_arm6.yaml"  # 6 joints + gripper, 15 Hz
T = 6
KEYS = "{state: [obs/joint, obs/grip], action: act, cameras: {obs/cam: base_0}, instruction: lang}"


def _frames(seed: int, n: int = T) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 12, 3), dtype=np.uint8)


def _png(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def _episode(seed: int = 0, n: int = T, lang: str | None = "stack the cups", cam: object = None) -> dict:
    """Datasets (path -> value) and attributes of one small episode; `cam` replaces the raw frames."""
    rng = np.random.default_rng(seed)
    out: dict = {
        "obs/joint": rng.normal(size=(n, 6)).astype(np.float32),
        "obs/grip": rng.uniform(size=(n,)).astype(np.float32),  # (T,): one dim
        "act": rng.normal(size=(n, 7)),
        "obs/cam": _frames(seed, n) if cam is None else cam,
    }
    return {"datasets": out, "attrs": {"lang": lang} if lang else {}}


def _put(group: h5py.Group, path: str, value: object) -> None:
    if isinstance(value, list):  # one encoded image per frame, variable length
        ds = group.create_dataset(path, (len(value),), dtype=h5py.vlen_dtype(np.uint8))
        for i, data in enumerate(value):
            ds[i] = np.frombuffer(data, np.uint8)
    else:
        group.create_dataset(path, data=value)


def _write_into(group: h5py.Group, episode: dict) -> None:
    for path, value in episode["datasets"].items():
        _put(group, path, value)
    group.attrs.update(episode["attrs"])


def _file(path, episode: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        _write_into(f, episode)
    return path


def _groups(path, episodes: dict[str, dict], root_attrs: dict | None = None, group: str = "data"):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs.update(root_attrs or {})
        for name, episode in episodes.items():
            _write_into(f.create_group(f"{group}/{name}"), episode)
    return path


def _sources(tmp_path, write_sources, path: str, keys: str = KEYS, extra: str = ""):
    entry = [
        "datasets:",
        "  - name: h5",
        "    kind: CE",
        "    format: hdf5",
        f"    path: {path}",
        f"    embodiment: {SPEC}",
        f"    keys: {keys}",
        *(f"    {line}" for line in extra.splitlines()),
    ]
    sources = load_sources(write_sources(tmp_path, "\n".join(entry) + "\n"))
    return sources, sources.datasets[0]


def _read(tmp_path, write_sources, path: str, keys: str = KEYS, extra: str = ""):
    """(frames of every episode, refs); an episode that raises BadRecord gives its record instead."""
    sources, src = _sources(tmp_path, write_sources, path, keys, extra)
    refs = list_episodes(sources, src)
    out = []
    for ref in refs:
        try:
            out.append(list(read_episode(ref, src, sources.embodiment(src))))
        except BadRecord as e:
            out.append(e.record)
    return out, refs


def test_bundled_sample_reads_with_the_right_widths_and_values(tmp_path, write_sources):
    keys = (
        "{state: [obs/robot0_joint_pos, obs/robot0_gripper_qpos], action: actions, instruction: "
        "language_instruction, cameras: {obs/agentview_image: base_0, /obs/robot0_eye_in_hand_image: left_wrist}}"
    )
    extra = "episodes: group\nsuccess: dones"
    sample = SAMPLES / "robomimic_sim" / "demos.hdf5"
    sources, src = _sources(tmp_path, write_sources, str(sample), keys, extra)
    refs = list_episodes(sources, src)
    assert [(r.index, r.source_file.rsplit("/", 1)[1], r.member) for r in refs] == [
        (k, f"demos.hdf5#demo_{k}", f"data/demo_{k}") for k in range(3)
    ]
    rows = list(read_episode(refs[1], src, sources.embodiment(src)))
    with h5py.File(sample) as f:
        demo = f["data/demo_1"]
        state = np.concatenate([demo["obs/robot0_joint_pos"][()], demo["obs/robot0_gripper_qpos"][()]], 1)
        assert len(rows) == len(state) == 36 and len(rows[0]["state"]) == len(rows[0]["action"]) == 7
        np.testing.assert_array_equal(np.asarray(rows[9]["state"], np.float32), state[9])
        np.testing.assert_array_equal(np.asarray(rows[9]["action"], np.float32), demo["actions"][9])
        np.testing.assert_array_equal(rows[9]["image_base_0"], demo["obs/agentview_image"][9])
        wrist = decode_jpeg(demo["obs/robot0_eye_in_hand_image"][9].tobytes())
        np.testing.assert_array_equal(rows[9]["image_left_wrist"], wrist)
        assert rows[0]["task"] == demo.attrs["language_instruction"]
    assert rows[0]["success"] is True and rows[-1]["timestamp"] == pytest.approx(35 / 15)
    assert {r["source_file"] for r in rows} == {refs[1].source_file}
    FRAME.table(as_written(rows[:4]))  # the schema takes them


def test_files_and_groups_read_alike(tmp_path, write_sources):
    episodes = {"demo_3": _episode(3), "demo_8": _episode(8, lang="wipe")}
    for name, episode in episodes.items():
        _file(tmp_path / "files" / f"{name}.hdf5", episode)
    _groups(tmp_path / "grouped" / "demos.h5", episodes)
    by_file, file_refs = _read(tmp_path, write_sources, "files")
    by_group, group_refs = _read(tmp_path, write_sources, "grouped", extra="episodes: group")
    assert [r.index for r in file_refs] == [r.index for r in group_refs] == [3, 8]
    assert [r.source_file for r in group_refs] == ["grouped/demos.h5#demo_3", "grouped/demos.h5#demo_8"]
    for a, b in zip(by_file, by_group, strict=True):
        assert [r["state"] for r in a] == [r["state"] for r in b]
        assert a[2]["episode_hash"] == b[2]["episode_hash"] and a[2]["task"] == b[2]["task"]
        np.testing.assert_array_equal(a[2]["image_base_0"], b[2]["image_base_0"])
    assert by_group[1][0]["task"] == "wipe" and by_group[1][0]["key"] == "h5/000008/000000"


def test_state_paths_are_concatenated_in_the_order_named(tmp_path, write_sources):
    ep = _episode(1)
    ep["datasets"]["obs/grip"] = ep["datasets"]["obs/grip"][:, None]  # (T, 1) reads as (T,) does
    _file(tmp_path / "ep_0.hdf5", ep)
    keys = KEYS.replace("[obs/joint, obs/grip]", "[/obs/grip, /obs/joint]")
    ((rows,), _) = _read(tmp_path, write_sources, "ep_0.hdf5", keys)
    d = ep["datasets"]
    np.testing.assert_array_equal(
        np.asarray(rows[4]["state"], np.float32), [d["obs/grip"][4, 0], *d["obs/joint"][4]]
    )
    np.testing.assert_array_equal(np.asarray(rows[4]["action"], np.float32), d["act"][4].astype(np.float32))


def _padded(blobs: list[bytes]) -> np.ndarray:
    out = np.zeros((len(blobs), max(map(len, blobs)) + 7), np.uint8)  # zero padding after each image
    for i, b in enumerate(blobs):
        out[i, : len(b)] = np.frombuffer(b, np.uint8)
    return out


@pytest.mark.parametrize(
    "store",
    [
        lambda frames: frames,  # raw (T, H, W, 3) uint8
        lambda frames: _padded([_png(f) for f in frames]),  # fixed-length (T, L) uint8
        lambda frames: [_png(f) for f in frames],  # variable-length uint8
        lambda frames: np.array([_png(f) for f in frames], dtype="S"),  # fixed-length bytes
        lambda frames: np.array([np.void(_png(f)) for f in frames]),  # opaque
    ],
    ids=["raw", "padded", "vlen", "bytes", "opaque"],
)
def test_raw_and_encoded_cameras_read_the_same_pixels(tmp_path, write_sources, store):
    frames = _frames(5)
    _file(tmp_path / "ep_0.hdf5", _episode(5, cam=store(frames)))
    ((rows,), _) = _read(tmp_path, write_sources, "ep_0.hdf5")
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(row["image_base_0"], frames[i])  # PNG is lossless


def test_jpeg_cameras_padded_or_variable_length(tmp_path, write_sources):
    frames = np.repeat(_frames(2)[:, :1, :1], 16, axis=1).repeat(16, axis=2)  # flat 16x16 colours
    jpegs = [encode_jpeg(f) for f in frames]
    _file(tmp_path / "a" / "ep_0.hdf5", _episode(2, cam=_padded(jpegs)))
    _file(tmp_path / "a" / "ep_1.hdf5", _episode(2, cam=jpegs))
    (padded, vlen), _ = _read(tmp_path, write_sources, "a")
    for i in range(T):
        np.testing.assert_array_equal(padded[i]["image_base_0"], vlen[i]["image_base_0"])
        assert np.abs(padded[i]["image_base_0"].astype(int) - frames[i]).mean() < 4


def test_instruction_from_the_group_the_file_root_or_a_dataset(tmp_path, write_sources):
    per_step = np.array([b"open the drawer"] * 3 + [b"close it"] * 3)
    episodes = {
        "demo_0": _episode(0, lang="the group's own"),
        "demo_1": _episode(1, lang=None),  # the file root's attribute
        "demo_2": _episode(2, lang=None),
    }
    episodes["demo_2"]["datasets"]["lang"] = per_step  # a dataset: one text per step
    _groups(tmp_path / "d.hdf5", episodes, root_attrs={"lang": "the file's"})
    (a, b, c), _ = _read(tmp_path, write_sources, "d.hdf5", extra="episodes: group")
    assert {r["task"] for r in a} == {"the group's own"} and {r["task"] for r in b} == {"the file's"}
    assert [r["task"] for r in c] == ["open the drawer"] * 3 + ["close it"] * 3


def test_a_key_missing_from_one_episode_quarantines_it_naming_the_path(tmp_path, write_sources):
    broken = _episode(1)
    del broken["datasets"]["obs/grip"]
    no_cam = _episode(2)
    del no_cam["datasets"]["obs/cam"]
    untold = _episode(3, lang=None)
    _groups(
        tmp_path / "d.hdf5", {"demo_0": _episode(0), "demo_1": broken, "demo_2": no_cam, "demo_3": untold}
    )
    (good, state, cam, task), _ = _read(tmp_path, write_sources, "d.hdf5", extra="episodes: group")
    assert len(good) == T
    assert (state.source_file, state.episode, state.field) == ("d.hdf5#demo_1", 1, "obs/grip")
    assert state.reason.startswith("no dataset obs/grip: the state is missing")
    assert (cam.episode, cam.field, cam.frames) == (2, "obs/cam", T)
    assert "no dataset obs/cam: the camera for slot base_0 is missing" in cam.reason
    assert (task.episode, task.field) == (3, "lang")
    assert task.reason.startswith(
        "no task: the group /data/demo_3 has no attribute or dataset 'lang', the file's root no attribute"
    )


def test_the_first_episode_is_checked_at_listing(tmp_path, write_sources):
    _file(tmp_path / "ep_0.hdf5", _episode(0))
    for keys, match in (
        (
            KEYS.replace("obs/grip", "obs/gripper"),
            r"no dataset 'obs/gripper' \(keys.state\) \(did you mean 'obs/grip'\?\)",
        ),
        (KEYS.replace("obs/cam", "obs/camera"), r"no dataset 'obs/camera' \(keys.cameras\)"),
        (KEYS.replace("lang}", "language}"), r"no attribute or dataset 'language' \(keys.instruction\)"),
        (KEYS.replace("base_0", "null"), "no camera dataset maps to a slot"),
        # without keys.cameras, the spec's camera names are the paths: sim_arm6 names agentview_image
        (KEYS.replace(", cameras: {obs/cam: base_0}", ""), r"no dataset 'agentview_image' \(keys.cameras\)"),
    ):
        with pytest.raises(ConfigError, match=match):
            _read(tmp_path, write_sources, "ep_0.hdf5", keys)
    _groups(tmp_path / "d.hdf5", {"demo_0": _episode(0)})
    with pytest.raises(ConfigError, match="d.hdf5 .*: no group 'episodes' holding the episodes"):
        _read(tmp_path, write_sources, "d.hdf5", extra="episodes: group\nepisode_group: episodes")


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (
            {"obs/grip": np.zeros(T - 1, np.float32)},
            "obs/grip",
            "obs/grip has 5 rows, obs/joint has 6: fields that disagree",
        ),
        (
            {"act": np.zeros((T, 7), "S4")},
            "act",
            "act holds |S4 values, not numbers: the action must be numbers",
        ),
        ({"obs/grip": np.ones(T, bool)}, "obs/grip", "obs/grip holds booleans"),
        (
            {"act": np.zeros((T, 6))},
            "action",
            "action has 6 columns (act), the embodiment spec sim_arm6 says 7",
        ),
        ({"obs/cam": np.zeros((T, 8, 12, 3), np.float32)}, "obs/cam", "camera obs/cam holds float32 values"),
        ({"obs/cam": _frames(0, T - 2)}, "obs/cam", "camera obs/cam has 4 frames, the episode has 6"),
        ({"obs/cam": [b"\xff\xd8 not a jpeg"] * T}, "image_base_0", "image does not decode"),
        ({"ts": np.arange(T) / 30.0}, "ts", "the rate measured from ts (median period 0.0333333 s"),
    ],
    ids=["rows", "strings", "bools", "width", "float_frames", "frame_count", "undecodable", "rate"],
)
def test_bad_episodes_are_quarantined_with_the_reason(tmp_path, write_sources, change, field, reason):
    ep = _episode(0)
    ep["datasets"]["ts"] = 100.0 + np.arange(T) / 15.0  # seconds, at the spec's 15 Hz
    _file(tmp_path / "ep_0.hdf5", ep)  # the first, checked at listing, is good
    ep["datasets"].update(change)
    _file(tmp_path / "ep_1.hdf5", ep)
    (good, bad), _ = _read(tmp_path, write_sources, ".", KEYS.replace("lang}", "lang, timestamp: ts}"))
    assert len(good) == T
    assert (bad.source_file, bad.episode, bad.field) == ("ep_1.hdf5", 1, field)
    assert reason in bad.reason, bad.reason


def test_group_ids_stay_unique_across_files(tmp_path, write_sources):
    _groups(tmp_path / "a" / "day_1.hdf5", {"demo_0": _episode(0), "demo_1": _episode(1)})
    _groups(tmp_path / "a" / "day_2.hdf5", {"demo_0": _episode(2)})  # demo_0 again: positions
    _, refs = _read(tmp_path, write_sources, "a", extra="episodes: group")
    assert [(r.index, r.source_file) for r in refs] == [
        (0, "a/day_1.hdf5#demo_0"),
        (1, "a/day_1.hdf5#demo_1"),
        (2, "a/day_2.hdf5#demo_0"),
    ]
    _groups(tmp_path / "a" / "day_2.hdf5", {"demo_7": _episode(2), "demo_10": _episode(3)})
    _, refs = _read(tmp_path, write_sources, "a", extra="episodes: group")
    assert [r.index for r in refs] == [0, 1, 7, 10]  # all unique: each group's own number


def test_a_corrupt_or_truncated_file_is_one_quarantined_unit(tmp_path, write_sources):
    good = _groups(tmp_path / "a" / "day_1.hdf5", {"demo_4": _episode(0), "demo_9": _episode(1)})
    (tmp_path / "a" / "day_2.hdf5").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "a" / "day_3.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    _groups(tmp_path / "a" / "day_4.hdf5", {"demo_5": _episode(2)})
    out, refs = _read(tmp_path, write_sources, "a", extra="episodes: group")
    assert [r.index for r in refs] == [4, 9, 10, 11, 5]  # the broken files: ids past the largest
    assert [len(x) for x in (out[0], out[1], out[4])] == [T, T, T]
    for bad, name in ((out[2], "a/day_2.hdf5"), (out[3], "a/day_3.hdf5")):
        assert isinstance(bad, QuarantineRecord)
        assert bad.source_file == name and bad.reason.startswith("cannot open as HDF5")
    (file_out,), _ = _read(tmp_path, write_sources, "a/day_2.hdf5")  # episodes: file
    assert file_out.reason.startswith("cannot open as HDF5") and file_out.episode == 2


# nightly: the bundled ingest (`make test`) reads this sample end to end, from S3, over HTTP and on Ray;
# this run adds a broken unit to the accounting
@pytest.mark.nightly
def test_the_sample_ingests_and_the_accounting_adds_up(tmp_path):
    folder = tmp_path / "robomimic"
    folder.mkdir()
    shutil.copy(SAMPLES / "robomimic_sim" / "demos.hdf5", folder / "demos.hdf5")
    with h5py.File(folder / "demos.hdf5", "r+") as f:
        del f["data/demo_2"]  # two tiny episodes
    (folder / "zz_broken.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        f"""datasets:
  - name: robomimic_sim
    kind: CE
    format: hdf5
    path: robomimic
    embodiment: {SPEC}
    episodes: group
    keys:
      state: [obs/robot0_joint_pos, obs/robot0_gripper_qpos]
      action: actions
      cameras: {{obs/agentview_image: base_0, obs/robot0_eye_in_hand_image: left_wrist}}
      instruction: language_instruction
    success: dones
"""
    )
    summary = ingest_cli(tmp_path / "out", workers=1, sources=sources)
    got = summary["datasets"]["robomimic_sim"]
    assert (got["read"], got["written"], got["quarantined"], got["samples"]) == (3, 2, 1, 72)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    acc = manifest["datasets"]["robomimic_sim"]["accounting"]
    assert acc["read"] == acc["written"] + acc["quarantined"] + acc["duplicates"]
    assert acc["frames_read"] == acc["frames_written"] + acc["frames_filtered"] + acc["frames_quarantined"]
    (line,) = (tmp_path / "out" / "quarantine" / "robomimic_sim.jsonl").read_text().splitlines()
    assert json.loads(line)["source_file"] == "robomimic/zz_broken.hdf5"
