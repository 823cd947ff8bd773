from __future__ import annotations

import h5py
import numpy as np
import pytest
from conftest import SAMPLES, as_written, nan_at, shared_path

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import load_embodiment
from vlamix.schemas.frame import FRAME
from vlamix.schemas.quarantine import BadRecord
from vlamix.sources.aloha_hdf5 import list_episodes, read_episode
from vlamix.sources.config import load_sources
from vlamix.sources.episode import EpisodeRef
from vlamix.transforms.image import decode_jpeg


def _sources(tmp_path, write_sources, path="eps", embodiment="mobile_aloha", extra=""):
    return load_sources(
        write_sources(
            tmp_path,
            f"""
            datasets:
              - name: mm
                kind: MM
                format: aloha_hdf5
                path: {path}
                embodiment: {embodiment}
                task: tidy up
            {extra}""",
        )
    )


def _read(tmp_path, write_sources, **kw):
    sources = _sources(tmp_path, write_sources, **kw)
    src = sources.datasets[0]
    refs = list_episodes(sources, src)
    return [as_written(read_episode(ref, src, sources.embodiment(src))) for ref in refs], refs


def test_bundled_sample_becomes_valid_frames():
    sources = load_sources(SAMPLES / "sources.yaml")
    src = sources.datasets[0]
    ref = list_episodes(sources, src)[0]
    rows = as_written(read_episode(ref, src, sources.embodiment(src)))
    table = FRAME.table(rows)
    with h5py.File(ref.path) as f:
        action = np.concatenate([f["action"][()], f["base_action"][()]], axis=1)
        assert len(rows) == len(action)
        np.testing.assert_array_equal(np.asarray(rows[10]["action"]), action[10].astype(np.float32))
        np.testing.assert_array_equal(
            np.asarray(rows[10]["state"]), f["observations/qpos"][10].astype(np.float32)
        )
        task = f.attrs["task"]
    assert rows[0]["task"] == task != src.task  # per-episode instruction from the file wins
    assert table.column("image_base_1").null_count == len(rows)  # no cam_low on this robot
    img = decode_jpeg(rows[3]["image_left_wrist"])
    assert img.shape == (224, 224, 3)
    assert rows[0]["episode_hash"] == rows[-1]["episode_hash"] and len(rows[0]["episode_hash"]) == 32
    assert rows[5]["timestamp"] == pytest.approx(0.1)


def test_raw_and_compressed_episodes_read_alike(tmp_path, write_sources, make_aloha_episode):
    make_aloha_episode(tmp_path / "eps" / "episode_0.hdf5", compress=True)
    make_aloha_episode(tmp_path / "eps" / "episode_1.hdf5", compress=False)
    (jpeg, raw), _ = _read(tmp_path, write_sources)
    assert len(jpeg) == len(raw) == 24
    np.testing.assert_array_equal(np.asarray(jpeg[4]["action"]), np.asarray(raw[4]["action"]))
    a, b = decode_jpeg(jpeg[4]["image_base_0"]).astype(int), decode_jpeg(raw[4]["image_base_0"]).astype(int)
    assert np.abs(a - b).mean() < 6  # same picture, two encodings
    assert jpeg[0]["episode_hash"] != raw[0]["episode_hash"]


def test_nan_is_reported_with_file_episode_frame_and_field(tmp_path, write_sources, make_aloha_episode):
    make_aloha_episode(tmp_path / "eps" / "episode_0.hdf5", mutate=nan_at("action", 17, 3))
    with pytest.raises(BadRecord) as info:
        _read(tmp_path, write_sources)
    rec = info.value.record
    assert (rec.source_file, rec.episode, rec.frame, rec.field, rec.frames) == (
        "eps/episode_0.hdf5",
        0,
        17,
        "action",
        24,
    )
    assert "eps/episode_0.hdf5, episode 0, frame 17, field action: non-finite" in str(info.value)


def test_width_mismatch_names_the_spec(tmp_path, write_sources, make_aloha_episode):
    make_aloha_episode(tmp_path / "eps" / "episode_0.hdf5", mutate=lambda f: f.__delitem__("base_action"))
    with pytest.raises(
        BadRecord, match="action has 14 columns \\(/action\\), the embodiment spec mobile_aloha says 16"
    ):
        _read(tmp_path, write_sources)
    # The same file is fine as a static ALOHA.
    (rows,), _ = _read(tmp_path, write_sources, embodiment="aloha")
    assert len(rows[0]["action"]) == 14


def test_unreadable_file_and_missing_dataset(tmp_path, write_sources, make_aloha_episode):
    (tmp_path / "eps").mkdir()
    (tmp_path / "eps" / "episode_0.hdf5").write_bytes(b"not hdf5 at all")
    with pytest.raises(BadRecord, match="cannot open as HDF5"):
        _read(tmp_path, write_sources)
    make_aloha_episode(
        tmp_path / "eps" / "episode_0.hdf5", mutate=lambda f: f.__delitem__("observations/qpos")
    )
    with pytest.raises(BadRecord, match="no dataset /observations/qpos: the state is missing"):
        _read(tmp_path, write_sources)


def test_episode_order_is_natural(tmp_path, write_sources, make_aloha_episode):
    for i in (10, 2, 1):
        make_aloha_episode(tmp_path / "eps" / f"episode_{i}.hdf5", frames=3)
    sources = _sources(tmp_path, write_sources)
    refs = list_episodes(sources, sources.datasets[0])
    assert [r.source_file for r in refs] == [
        "eps/episode_1.hdf5",
        "eps/episode_2.hdf5",
        "eps/episode_10.hdf5",
    ]
    assert [r.index for r in refs] == [1, 2, 10]  # each file's own number, not its position
    (tmp_path / "eps" / "episode_2.hdf5").rename(tmp_path / "eps" / "take_b.hdf5")
    refs = list_episodes(sources, sources.datasets[0])  # not every stem ends in a number: positions
    assert [(r.source_file, r.index) for r in refs] == [
        ("eps/episode_1.hdf5", 0),
        ("eps/episode_10.hdf5", 1),
        ("eps/take_b.hdf5", 2),
    ]


def test_real_act_simulation_episode():
    """The ACT project's recorded sim episode: raw 480x640 frames, camera `top`, static ALOHA."""
    path = shared_path("data", "aloha_sim_insertion", "episode_0.hdf5")
    emb = load_embodiment("aloha")
    from vlamix.sources.config import RobotSource

    src = RobotSource(
        name="act_sim",
        kind="ME",
        format="aloha_hdf5",
        path=str(path),
        embodiment="aloha",
        task="insert the peg",
    )
    rows = as_written(read_episode(EpisodeRef("act_sim", 0, str(path), path.name), src, emb))
    assert len(rows) == 400
    FRAME.table(rows[:50])
    img = decode_jpeg(rows[0]["image_base_0"])
    assert img.shape == (224, 224, 3)
    assert img[:20].max() < 10 and img[100].mean() > 20  # letterbox bars above a real picture (4:3 -> square)
    assert rows[0]["image_left_wrist"] is None


def test_truncated_file_unknown_camera_and_broken_jpeg(tmp_path, write_sources, make_aloha_episode):
    path = make_aloha_episode(tmp_path / "eps" / "episode_0.hdf5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadRecord, match="cannot open as HDF5"):
        _read(tmp_path, write_sources)

    def rename_camera(f):
        f.move("observations/images/cam_high", "observations/images/cam_front")

    make_aloha_episode(path, mutate=rename_camera)
    with pytest.raises(ConfigError, match="eps/episode_0.hdf5 .*first.*unknown camera 'cam_front'"):
        _read(tmp_path, write_sources)  # the first file shows it at listing: a configuration error
    path.rename(tmp_path / "eps" / "episode_1.hdf5")
    make_aloha_episode(path)
    sources = _sources(tmp_path, write_sources)
    src = sources.datasets[0]
    _, later = list_episodes(sources, src)
    with pytest.raises(BadRecord, match="unknown camera 'cam_front'") as info:
        as_written(read_episode(later, src, sources.embodiment(src)))  # a later file: quarantined
    assert (info.value.record.field, info.value.record.episode) == ("/observations/images/cam_front", 1)
    (tmp_path / "eps" / "episode_1.hdf5").rename(path)
    (rows,), _ = _read(tmp_path, write_sources, extra="    keys: {cameras: {cam_front: null}}\n")
    assert rows[0]["image_base_0"] is None and rows[0]["image_left_wrist"] is not None

    def break_jpeg(f):
        data = f["observations/images/cam_left_wrist"][()]
        data[3, 2:200] = 7
        del f["observations/images/cam_left_wrist"]
        f.create_dataset("observations/images/cam_left_wrist", data=data)

    make_aloha_episode(path, mutate=break_jpeg)
    with pytest.raises(BadRecord, match="JPEG does not decode") as info:
        _read(tmp_path, write_sources)
    assert (info.value.record.frame, info.value.record.field) == (3, "image_left_wrist")


def test_success_from_a_field(tmp_path, write_sources, make_aloha_episode):
    def mark(value):
        return lambda f: f.attrs.__setitem__("succeeded", value)

    make_aloha_episode(tmp_path / "eps" / "episode_0.hdf5", mutate=mark(True), frames=3)
    make_aloha_episode(tmp_path / "eps" / "episode_1.hdf5", mutate=mark(False), frames=3)
    make_aloha_episode(tmp_path / "eps" / "episode_2.hdf5", frames=3)
    (a, b, c), _ = _read(tmp_path, write_sources, extra="    success: succeeded\n")
    assert (a[0]["success"], b[0]["success"], c[0]["success"]) == (True, False, None)
