"""Zarr replay buffers (format: zarr): episode slices by meta/episode_ends, keys, cameras, zip stores,
stores at a URL, and what is refused or quarantined."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from conftest import SAMPLES, ingest_cli
from servers import http_server

from vlamix.config import ConfigError
from vlamix.schemas.quarantine import BadRecord
from vlamix.sources.config import load_sources
from vlamix.sources.synthetic.zarr_samples import umi_task
from vlamix.sources.zarr_buffer import list_episodes, read_episode

SPEC = SAMPLES / "embodiments" / "umi_sim.yaml"
STATE = "[pos, rot, width]"


def write_store(
    path: Path, lengths=(5, 4, 6), *, ends=None, zarr_format: int = 2, extra: dict | None = None
) -> Path:
    """A small replay buffer whose values name their global step (row i of `pos` is i / 100, frame i's
    first pixel is i), so a test can tell which steps a reader took. A path ending .zip is a ZipStore."""
    n = sum(lengths)
    step = np.arange(n, dtype=np.float32)[:, None]
    frames = np.zeros((n, 8, 8, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(n)
    frames[:, 1:, :, 1] = 90
    arrays = {
        "pos": np.concatenate([step, step + 0.5, -step], axis=1) / 100,
        "rot": np.concatenate([step * 0, step / 1000, step / 2000], axis=1),
        "width": (step % 8) / 100,
        "action": np.concatenate([step / 100 + 0.01, np.zeros((n, 5)), (step % 8) / 100], axis=1),
        "camera0_rgb": frames,
        **(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    store = zarr.storage.ZipStore(path, mode="w") if path.suffix == ".zip" else path
    root = zarr.open_group(store, mode="w", zarr_format=zarr_format)
    for key, values in arrays.items():
        image = values.ndim == 4
        chunks = (1, *values.shape[1:]) if image else values.shape
        compressor = numcodecs.Blosc(cname="zstd") if image else numcodecs.Zstd()
        kw = {"compressors": compressor} if zarr_format == 2 else {}
        root.require_group("data").create_array(
            key, shape=values.shape, chunks=chunks, dtype=values.dtype, **kw
        )[:] = values
    stops = np.cumsum(lengths) if ends is None else np.asarray(ends)
    root.require_group("meta").create_array("episode_ends", shape=stops.shape, dtype=np.int64)[:] = stops
    if path.suffix == ".zip":
        store.close()
    return path


def _sources(
    tmp_path, write_sources, path, keys=f"{{state: {STATE}, action: action}}", task="task: stack it"
):
    return load_sources(
        write_sources(
            tmp_path,
            f"""
            datasets:
              - name: buffer
                kind: CE
                format: zarr
                path: {path}
                embodiment: {SPEC}
                {task}
                keys: {keys}
            """,
        )
    )


def _read(sources, ref) -> list[dict]:
    src = sources.datasets[0]
    return list(read_episode(ref, src, sources.embodiment(src).as_logged()))


def _listed(tmp_path, write_sources, path, **kw):
    sources = _sources(tmp_path, write_sources, path, **kw)
    return sources, list_episodes(sources, sources.datasets[0])


def test_bundled_sample_reads_each_episodes_own_steps(tmp_path, write_sources):
    store = SAMPLES / "umi_sim" / "replay_buffer.zarr"
    sources, refs = _listed(
        tmp_path,
        write_sources,
        store,
        keys="{state: [robot0_eef_pos, robot0_eef_rot_axis_angle, robot0_gripper_width], action: action}",
        task=f"task: {umi_task()}",
    )
    root = zarr.open_group(store, mode="r")
    ends = root["meta/episode_ends"][:]
    assert [(r.index, r.record, r.offset, r.offset + r.frames) for r in refs] == [
        (k, k, int(start), int(end)) for k, (start, end) in enumerate(zip([0, *ends[:-1]], ends, strict=True))
    ]
    rows = _read(sources, refs[1])
    start, stop = int(ends[0]), int(ends[1])
    state = np.concatenate(
        [
            root[f"data/{k}"][start:stop]
            for k in ("robot0_eef_pos", "robot0_eef_rot_axis_angle", "robot0_gripper_width")
        ],
        axis=1,
    )
    np.testing.assert_array_equal(np.asarray([r["state"] for r in rows], np.float32), state)
    np.testing.assert_array_equal(
        np.asarray([r["action"] for r in rows], np.float32), root["data/action"][start:stop]
    )
    np.testing.assert_array_equal(rows[7]["image_left_wrist"], root["data/camera0_rgb"][start + 7])
    assert [r["frame"] for r in rows] == list(range(stop - start))
    assert {r["episode"] for r in rows} == {1} and rows[5]["timestamp"] == pytest.approx(1.0)  # 5 Hz
    assert rows[0]["task"] == umi_task() and rows[0]["image_base_0"] is None
    assert rows[0]["source_file"] == str(store) and len(rows[0]["episode_hash"]) == 32


@pytest.mark.parametrize("name, zarr_format", [("buffer.zarr.zip", 2), ("buffer.zarr", 3)])
def test_state_keys_concatenate_in_order_over_each_episode_slice(tmp_path, write_sources, name, zarr_format):
    write_store(tmp_path / name, (5, 4, 6), zarr_format=zarr_format)
    sources, refs = _listed(tmp_path, write_sources, name)
    assert [(r.offset, r.frames, r.error) for r in refs] == [(0, 5, None), (5, 4, None), (9, 6, None)]
    rows = _read(sources, refs[2])
    steps = np.arange(9, 15, dtype=np.float32)
    np.testing.assert_allclose(
        [r["state"][:3] for r in rows], np.stack([steps, steps + 0.5, -steps], 1) / 100
    )
    np.testing.assert_allclose(
        [r["state"][3:6] for r in rows], np.stack([0 * steps, steps / 1000, steps / 2000], 1)
    )
    np.testing.assert_allclose([r["state"][6] for r in rows], (steps % 8) / 100)
    assert [int(r["image_left_wrist"][0, 0, 0]) for r in rows] == list(range(9, 15))
    assert [r["episode"] for r in rows] == [2] * 6 and rows[0]["task"] == "stack it"


def test_episode_ends_that_stop_increasing_quarantine_every_episode_of_that_store(tmp_path, write_sources):
    write_store(tmp_path / "stores" / "replay_2.zarr", (3, 4))
    write_store(tmp_path / "stores" / "replay_10.zarr", (5, 4, 6), ends=[5, 3, 15])
    sources, refs = _listed(tmp_path, write_sources, "stores")
    assert [(r.index, r.source_file, r.error is None) for r in refs] == [
        (0, "stores/replay_2.zarr", True),
        (1, "stores/replay_2.zarr", True),
        *[(k, "stores/replay_10.zarr", False) for k in (2, 3, 4)],  # every unit the store declares
    ]
    assert [len(_read(sources, r)) for r in refs[:2]] == [3, 4]  # the other store is read
    for ref in refs[2:]:
        with pytest.raises(BadRecord) as bad:
            _read(sources, ref)
        q = bad.value.record
        assert (q.episode, q.source_file, q.frames) == (ref.index, "stores/replay_10.zarr", 0)
        assert (
            "meta/episode_ends is not strictly increasing at index 1" in q.reason
            and "[0] is 5, [1] is 3" in q.reason
        )


def test_last_episode_end_that_is_not_the_arrays_length_quarantines_the_store(tmp_path, write_sources):
    write_store(tmp_path / "b.zarr", (5, 4, 6), ends=[5, 9, 14])
    sources, refs = _listed(tmp_path, write_sources, "b.zarr")
    assert len(refs) == 3 and all(r.error == refs[0].error for r in refs)
    with pytest.raises(
        BadRecord, match=r"the last of meta/episode_ends \(\[2\]\) is 14, but data/action holds 15"
    ):
        _read(sources, refs[1])


def test_a_store_without_episode_ends_is_one_quarantined_unit(tmp_path, write_sources):
    write_store(tmp_path / "s" / "a.zarr", (3,))
    shutil.rmtree(write_store(tmp_path / "s" / "b.zarr", (3, 3)) / "meta")
    sources, refs = _listed(tmp_path, write_sources, "s/*.zarr")
    assert [(r.index, r.source_file) for r in refs] == [(0, "s/a.zarr"), (1, "s/b.zarr")]
    with pytest.raises(BadRecord, match="has no meta/episode_ends"):
        _read(sources, refs[1])


def test_a_missing_key_is_a_configuration_error_on_the_first_store_and_a_quarantine_after(
    tmp_path, write_sources
):
    write_store(tmp_path / "s" / "a.zarr", (3,))
    write_store(tmp_path / "s" / "b.zarr", (3,))
    keys = "{state: [pos, rot, data/width], action: action}"
    with pytest.raises(ConfigError, match=r"s/a.zarr \(the first store.*no array data/data/width.*'width'"):
        _listed(tmp_path, write_sources, "s", keys=keys)
    root = zarr.open_group(tmp_path / "s" / "b.zarr", mode="r+")
    root.create_array("data/grip", shape=(3, 1), dtype=np.float32)[:] = root["data/width"][:]
    del root["data/width"]
    sources, refs = _listed(tmp_path, write_sources, "s")
    assert len(_read(sources, refs[0])) == 3
    with pytest.raises(
        BadRecord, match=r"episode 0 of the store: no array data/width: the state is missing"
    ) as bad:
        _read(sources, refs[1])
    assert bad.value.record.field == "data/width"


def test_a_width_that_is_not_the_specs_is_refused(tmp_path, write_sources):
    write_store(tmp_path / "a.zarr", (3,))
    with pytest.raises(
        ConfigError, match=r"state has 6 columns \(pos \+ rot\), the embodiment spec umi_sim says 7"
    ):
        _listed(tmp_path, write_sources, "a.zarr", keys="{state: [pos, rot], action: action}")


def test_cameras_must_exist_and_map(tmp_path, write_sources):
    write_store(tmp_path / "a.zarr", (3,), extra={"camera1_rgb": np.zeros((3, 8, 8, 3), np.uint8)})
    with pytest.raises(ConfigError, match="unknown camera 'camera1_rgb'"):
        _listed(tmp_path, write_sources, "a.zarr")  # a view nobody mapped is never lost silently
    keys = f"{{state: {STATE}, action: action, cameras: {{camera1_rgb: null, cam_front: base_0}}}}"
    with pytest.raises(
        ConfigError, match=r"maps 'cam_front' to base_0, but the store has no array data/cam_front"
    ):
        _listed(tmp_path, write_sources, "a.zarr", keys=keys)
    keys = f"{{state: {STATE}, action: action, cameras: {{camera1_rgb: base_0}}}}"
    sources, refs = _listed(tmp_path, write_sources, "a.zarr", keys=keys)
    rows = _read(sources, refs[0])
    assert rows[0]["image_base_0"].max() == 0 and rows[2]["image_left_wrist"][0, 0, 0] == 2


def test_a_codec_this_install_lacks_is_refused_by_name_unless_dropped(tmp_path, write_sources):
    write_store(tmp_path / "a.zarr", (3, 2), extra={"camera1_rgb": np.ones((5, 8, 8, 3), np.uint8)})
    meta = tmp_path / "a.zarr" / "data" / "camera1_rgb" / ".zarray"
    header = json.loads(meta.read_text())
    meta.write_text(json.dumps({**header, "compressor": {"id": "imagecodecs_jpegxl", "level": 50}}))
    with pytest.raises(
        ConfigError, match=r"data/camera1_rgb is stored with a codec .*imagecodecs_jpegxl.*null"
    ):
        _listed(tmp_path, write_sources, "a.zarr")
    keys = f"{{state: {STATE}, action: action, cameras: {{camera1_rgb: null}}}}"
    sources, refs = _listed(tmp_path, write_sources, "a.zarr", keys=keys)
    assert [len(_read(sources, r)) for r in refs] == [3, 2]


def test_float_frames_are_refused_not_rescaled(tmp_path, write_sources):
    write_store(tmp_path / "a.zarr", (3,), extra={"img": np.zeros((3, 8, 8, 3), np.float32)})
    keys = f"{{state: {STATE}, action: action, cameras: {{img: base_0}}}}"
    with pytest.raises(
        ConfigError, match=r"camera data/img holds float32 .*expected \(steps, H, W, 3\) uint8"
    ):
        _listed(tmp_path, write_sources, "a.zarr", keys=keys)


def test_a_corrupted_frame_quarantines_its_episode_naming_the_frame(tmp_path, write_sources):
    write_store(tmp_path / "a.zarr", (3, 4))
    (tmp_path / "a.zarr" / "data" / "camera0_rgb" / "5.0.0.0").write_bytes(b"\x00" * 40)
    sources, refs = _listed(tmp_path, write_sources, "a.zarr")
    assert len(_read(sources, refs[0])) == 3
    with pytest.raises(BadRecord, match="frame 2 of data/camera0_rgb does not read") as bad:
        _read(sources, refs[1])
    assert (bad.value.record.frame, bad.value.record.frames) == (2, 4)


def test_per_step_instructions_and_the_need_for_a_task(tmp_path, write_sources):
    texts = np.array(["pick", "", "", "place", "place"])
    write_store(tmp_path / "a.zarr", (3, 2), extra={"language": texts})
    keys = f"{{state: {STATE}, action: action, instruction: language}}"
    sources, refs = _listed(tmp_path, write_sources, "a.zarr", keys=keys, task="")
    assert [r["task"] for ref in refs for r in _read(sources, ref)] == ["pick"] * 3 + ["place"] * 2
    with pytest.raises(ConfigError, match="no task for the episodes"):
        _listed(tmp_path, write_sources, "a.zarr", task="")


def test_a_rate_that_is_not_the_specs_is_quarantined(tmp_path, write_sources):
    write_store(tmp_path / "a.zarr", (4,), extra={"timestamp": np.arange(4) / 10.0})  # 10 Hz, spec 5 Hz
    sources, refs = _listed(tmp_path, write_sources, "a.zarr")
    with pytest.raises(BadRecord, match="10 Hz, the embodiment spec umi_sim says control_rate_hz 5"):
        _read(sources, refs[0])


def test_a_zip_store_at_a_url(tmp_path, write_sources):
    write_store(tmp_path / "site" / "buffer.zarr.zip", (3, 2))
    with http_server(tmp_path / "site") as base:
        sources, refs = _listed(tmp_path, write_sources, f"{base}/buffer.zarr.zip")
        rows = _read(sources, refs[1])
    assert refs[1].source_file == f"{base}/buffer.zarr.zip"
    assert [int(r["image_left_wrist"][0, 0, 0]) for r in rows] == [3, 4]


# nightly: the bundled ingest (`make test`) reads this sample end to end, from S3, over HTTP and on Ray;
# this run adds a broken unit to the accounting
@pytest.mark.nightly
def test_ingest_accounts_for_every_episode(tmp_path, write_sources):
    """The bundled sample and a copy whose episode_ends stop increasing: 3 episodes written, 3
    quarantined, none lost."""
    shutil.copytree(SAMPLES / "umi_sim" / "replay_buffer.zarr", tmp_path / "stores" / "a.zarr")
    broken = shutil.copytree(tmp_path / "stores" / "a.zarr", tmp_path / "stores" / "b.zarr")
    zarr.open_group(broken, mode="r+")["meta/episode_ends"][1] = 10
    keys = "{state: [robot0_eef_pos, robot0_eef_rot_axis_angle, robot0_gripper_width], action: action}"
    path = write_sources(
        tmp_path,
        f"""
        datasets:
          - name: umi
            kind: CE
            format: zarr
            path: stores
            embodiment: {SPEC}
            task: {umi_task()}
            keys: {keys}
        """,
    )
    ingest_cli(tmp_path / "out", workers=1, sources=path)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    acc = manifest["datasets"]["umi"]["accounting"]
    assert {k: acc[k] for k in ("read", "written", "quarantined", "duplicates")} == {
        "read": 6,
        "written": 3,
        "quarantined": 3,
        "duplicates": 0,
    }
    assert acc["frames_read"] == 117 and acc["frames_quarantined"] == 0
    lines = (tmp_path / "out" / "quarantine" / "umi.jsonl").read_text().splitlines()
    assert [json.loads(x)["source_file"] for x in lines] == ["stores/b.zarr"] * 3
