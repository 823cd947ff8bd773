"""The Zarr replay-buffer sample `umi_sim`: tabletop demonstrations written the way diffusion-policy's
`ReplayBuffer` writes them (zarr format 2: every step of every episode concatenated under `data/`,
`meta/episode_ends` the cumulative end step of each episode), under UMI's array names.

- `data/robot0_eef_pos` (N, 3) m, `data/robot0_eef_rot_axis_angle` (N, 3) rotation vector (rad) relative
  to the hand pointing down, `data/robot0_gripper_width` (N, 1) m (0.08 open, 0 closed);
- `data/action` (N, 7): the commanded pose of the next step (position, rotation vector) and the
  commanded gripper width, absolute;
- `data/camera0_rgb` (N, 64, 64, 3) uint8: the wrist camera, one frame per chunk, Blosc/zstd compressed
  (UMI itself stores JPEG-XL through imagecodecs, which the reader refuses by name);
- `data/robot0_demo_start_pose`, `data/robot0_demo_end_pose` (N, 6): UMI's per-episode poses repeated on
  every step, read by nothing (every data array must still span every episode); `data/timestamp` (N,)
  seconds, which the reader checks against the spec's rate.

Recorded at 5 Hz (samples/embodiments/umi_sim.yaml): a whole pick-and-place in under 40 steps. A UMI store
holds one task's demonstrations, so the episodes are the first seeds from SEED that share one task; the
sources file gives it with `task:`. Zarr v2 metadata carries no time: the bytes are the same on every run.
"""

from __future__ import annotations

from pathlib import Path

import numcodecs
import numpy as np
import zarr
from scipy.spatial.transform import Rotation

from vlamix.sources.synthetic.kinematics import portable
from vlamix.sources.synthetic.tabletop import (
    SIM_HZ,
    TabletopEpisode,
    ee_pose,
    render_tabletop,
    simulate_tabletop,
)

__all__ = ["GRIPPER_OPEN_M", "RATE_HZ", "SEED", "generate_zarr", "umi_task"]

RATE_HZ = 5
SEED = 300
GRIPPER_OPEN_M = 0.08  # the fingers' span when open (tabletop.FINGER_SPAN)
IMAGE_SIZE = 64
START_TIME = 1_700_000_000.0  # the first episode's first step, seconds since the epoch (fixed)
_LOWDIM = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)  # ReplayBuffer's default
_IMAGES = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)


def _same_task(first: int, count: int) -> list[TabletopEpisode]:
    """The first `count` episodes from seed `first` on whose task is seed `first`'s."""
    eps = [simulate_tabletop(first)]
    seed = first
    while len(eps) < count:
        seed += 1
        ep = simulate_tabletop(seed)
        if ep.instruction == eps[0].instruction:
            eps.append(ep)
    return eps


def umi_task() -> str:
    """The task every episode of the sample performs (the sources file's `task:`)."""
    return simulate_tabletop(SEED).instruction


def _pose(q: np.ndarray) -> np.ndarray:
    """Tool tip position and its orientation as a rotation vector (UMI's `eef_rot_axis_angle`)."""
    pose = ee_pose(q)
    return np.concatenate([pose[:3], Rotation.from_euler("xyz", pose[3:]).as_rotvec()])


def _episode(ep: TabletopEpisode) -> dict[str, np.ndarray]:
    """One episode's arrays, sampled from the 50 Hz simulation at RATE_HZ."""
    idx = np.arange(0, len(ep.t), SIM_HZ // RATE_HZ)
    nxt = np.concatenate([idx[1:], idx[-1:]])
    pose = portable(np.stack([_pose(ep.qpos[i, :6]) for i in idx]))
    target = portable(np.stack([_pose(ep.command[i, :6]) for i in nxt]))
    width = portable(GRIPPER_OPEN_M * np.clip(ep.qpos[idx, 6:7], 0.0, 1.0))
    command = portable(GRIPPER_OPEN_M * np.clip(ep.command[nxt, 6:7], 0.0, 1.0))
    n = len(idx)
    return {
        "robot0_eef_pos": pose[:, :3].astype(np.float32),
        "robot0_eef_rot_axis_angle": pose[:, 3:].astype(np.float32),
        "robot0_gripper_width": width.astype(np.float32),
        "robot0_demo_start_pose": np.tile(pose[0], (n, 1)).astype(np.float32),
        "robot0_demo_end_pose": np.tile(pose[-1], (n, 1)).astype(np.float32),
        "action": np.concatenate([target, command], axis=1).astype(np.float32),
        "camera0_rgb": np.stack([render_tabletop(ep, i, IMAGE_SIZE)["wrist"] for i in idx]),
        "timestamp": ep.t[idx].astype(np.float64),
    }


def generate_zarr(out: Path, episodes: int = 3) -> list[Path]:
    """Write `out/umi_sim/replay_buffer.zarr` (zarr format 2); returns [that store]."""
    parts = [_episode(ep) for ep in _same_task(SEED, episodes)]
    for k, part in enumerate(parts):  # episodes follow each other, 60 s apart
        part["timestamp"] = START_TIME + 60.0 * k + part["timestamp"]
    data = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    ends = np.cumsum([len(p["action"]) for p in parts]).astype(np.int64)
    store = out / "umi_sim" / "replay_buffer.zarr"
    root = zarr.open_group(store, mode="w", zarr_format=2)
    group = root.require_group("data")
    for key in sorted(data):
        values = data[key]
        image = key == "camera0_rgb"
        chunks = (1, *values.shape[1:]) if image else values.shape
        array = group.create_array(
            key,
            shape=values.shape,
            chunks=chunks,
            dtype=values.dtype,
            compressors=_IMAGES if image else _LOWDIM,
        )
        array[:] = values
    meta = root.require_group("meta")
    meta.create_array("episode_ends", shape=ends.shape, dtype=ends.dtype, compressors=None)[:] = ends
    return [store]
