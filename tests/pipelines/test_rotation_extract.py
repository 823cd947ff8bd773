"""Rotation groups through ingest: a source logging quaternions is read as logged, its frames are written
with the spec's trained Euler dims, a quaternion far from unit norm quarantines its episode naming the
frame, and the rest of the ingest (statistics, FAST, shards) runs on the trained dims."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pyarrow.parquet as pq
from scipy.spatial.transform import Rotation
from units_kit import build_in_process

from vlamix.pipelines.datasets import kinds_of
from vlamix.pipelines.index_step import write_index_and_manifest
from vlamix.pipelines.options import IngestOptions
from vlamix.shards.workdir import WorkDir
from vlamix.sources.config import load_sources

SPEC = """\
name: quat_arm
description: an end-effector arm whose logger writes quaternions (x, y, z, w)
control_rate_hz: 10
control_mode: ee
gripper: {open: 0.0, closed: 1.0}
cameras: {cam: base_0}
state:
  - {name: x, kind: ee_position, unit: m}
  - {name: y, kind: ee_position, unit: m}
  - {name: z, kind: ee_position, unit: m}
  - {name: roll, kind: ee_rotation, unit: rad}
  - {name: pitch, kind: ee_rotation, unit: rad}
  - {name: yaw, kind: ee_rotation, unit: rad}
  - {name: g, kind: gripper, unit: normalized}
action:
  - {name: x, kind: ee_position, unit: m, delta: true}
  - {name: y, kind: ee_position, unit: m, delta: true}
  - {name: z, kind: ee_position, unit: m, delta: true}
  - {name: roll, kind: ee_rotation, unit: rad, delta: true}
  - {name: pitch, kind: ee_rotation, unit: rad, delta: true}
  - {name: yaw, kind: ee_rotation, unit: rad, delta: true}
  - {name: g, kind: gripper, unit: normalized}
rotation: {dims: [3, 4, 5], repr: quat_xyzw}
"""
FRAMES = 20


def _euler(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yaw = np.linspace(2.8, 3.5, FRAMES)  # through +-pi
    return np.stack([rng.uniform(-0.3, 0.3, FRAMES), rng.uniform(-0.3, 0.3, FRAMES), yaw], 1)


def _episode(path, seed: int, bad_frame: int | None = None) -> np.ndarray:
    euler = _euler(seed)
    quat = Rotation.from_euler("xyz", euler).as_quat()
    if bad_frame is not None:
        quat[bad_frame] *= 1.5
    pos = np.linspace(0.2, 0.4, FRAMES)[:, None] * np.ones(3)
    grip = np.linspace(0, 1, FRAMES)[:, None]
    qpos = np.concatenate([pos, quat, grip], 1)
    with h5py.File(path, "w") as f:
        f.create_dataset("observations/qpos", data=qpos, track_times=False)
        f.create_dataset("action", data=np.roll(qpos, -1, 0), track_times=False)
        images = np.full((FRAMES, 24, 24, 3), 90, np.uint8)
        f.create_dataset("observations/images/cam", data=images, track_times=False)
    return euler


def test_quaternion_sources_are_written_as_trained_euler_dims_and_bad_ones_quarantined(tmp_path):
    (tmp_path / "eps").mkdir()
    euler = _episode(tmp_path / "eps" / "episode_0.hdf5", 1)
    _episode(tmp_path / "eps" / "episode_1.hdf5", 2, bad_frame=4)
    (tmp_path / "quat_arm.yaml").write_text(SPEC)
    (tmp_path / "sources.yaml").write_text(
        "datasets:\n  - {name: quat, kind: CE, format: aloha_hdf5, path: eps, embodiment: quat_arm.yaml, "
        "task: move the cube}\n"
    )
    opts = IngestOptions(tmp_path / "sources.yaml", tmp_path / "out")
    sources = load_sources(opts.sources)
    (kind,) = kinds_of(sources)
    outcomes = [unit.extract("quarantine") for unit in kind.extract_units(opts)]
    written = [r for o in outcomes for r in o.results]
    bad = [q for o in outcomes for q in o.quarantined]
    assert [r.episode for r in written] == [0]
    # the action (the next step's pose) holds frame 4's quaternion at frame 3: the first place it is read
    assert len(bad) == 1 and bad[0].episode == 1 and bad[0].frame == 3 and bad[0].field == "action"
    assert "quat_xyzw" in bad[0].reason and "norm 1.5" in bad[0].reason
    frames = pq.read_table(tmp_path / "out" / WorkDir.frames("quat", 0)).to_pydict()
    state = np.asarray(frames["state"])
    assert state.shape == (FRAMES, 7)
    got = Rotation.from_euler("xyz", state[:, 3:6]).as_matrix()
    np.testing.assert_allclose(got, Rotation.from_euler("xyz", euler).as_matrix(), atol=1e-5)

    work = opts.work  # the rest of the ingest runs on the trained dims
    work.write_outcomes("extracted", "quat", written)
    work.write_outcomes("quarantined", "quat", bad)
    kind.after_extract(opts)
    build_in_process(opts, sources)
    write_index_and_manifest(opts.work, sources)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    entry = manifest["datasets"]["quat"]
    acc = entry["accounting"]
    assert (acc["read"], acc["written"], acc["quarantined"]) == (2, 1, 1)
    assert acc["frames_written"] == entry["samples"] == FRAMES
    stats = json.loads((tmp_path / "out" / entry["stats"]["path"]).read_text())
    assert len(stats["actions"]["mean"]) == 7
    # the yaw deltas are relative rotations of a slow turn, not 2 pi jumps where yaw crosses pi
    assert max(abs(v) for v in stats["actions"]["max"][3:6]) < 1.0
