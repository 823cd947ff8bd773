"""The `format: hdf5` sample: a robomimic-style file of demonstrations, read by key mapping alone.

`robomimic_sim/demos.hdf5` holds `data/demo_0 .. demo_2`, each a window around the grasp of one tabletop
pick-and-place (sources/synthetic/tabletop.py) logged at 15 Hz by a generic 6-DoF arm (the `sim_arm6`
embodiment): `obs/robot0_joint_pos` (6), `obs/robot0_gripper_qpos` (1, 0 open .. 1 closed),
`obs/robot0_eef_pos` (3, not read), `actions` (7: joint targets + gripper command), `rewards` and `dones`
(1 at the last step), `obs/agentview_image` as raw (T, 64, 64, 3) uint8 frames (gzip chunks) and
`obs/robot0_eye_in_hand_image` as variable-length JPEG bytes, so both camera encodings are covered. Each
demo's group carries its instruction as the attribute `language_instruction`, and `num_samples`; `data`
carries robomimic's `total` and `env_args` (JSON). Written with `track_times=False` and a fixed `libver`,
so the same seed gives the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from vlamix.schemas.image_codec import encode_jpeg
from vlamix.sources.synthetic.kinematics import portable
from vlamix.sources.synthetic.tabletop import (
    SIM_HZ,
    TabletopEpisode,
    ee_pose,
    render_tabletop,
    simulate_tabletop,
)

__all__ = ["generate_hdf5"]

FOLDER = "robomimic_sim"
FILE = "demos.hdf5"
HZ = 15
STEPS = 36  # per demo: 2.4 s around the grasp
SIZE = 64
JPEG_QUALITY = 85
_SEEDS = (4100, 4101, 4102)


def _window(ep: TabletopEpisode) -> np.ndarray:
    """Simulation steps of a 15 Hz logger over STEPS ticks around the moment the gripper closes."""
    ticks = np.round(np.arange(0.0, ep.t[-1], 1.0 / HZ) * SIM_HZ).astype(int)
    ticks = np.unique(np.minimum(ticks, len(ep.t) - 1))
    closing = int(np.argmax(ep.command[ticks, 6] < 0.5))  # the first tick commanding a closed gripper
    start = min(max(0, closing - STEPS // 2), len(ticks) - STEPS)
    return ticks[start : start + STEPS]


def _dataset(group: h5py.Group, name: str, data: np.ndarray, **kw) -> None:
    group.create_dataset(name, data=data, track_times=False, **kw)


def _write_demo(group: h5py.Group, ep: TabletopEpisode) -> None:
    idx = _window(ep)
    nxt = np.concatenate([idx[1:], idx[-1:]])
    frames = [render_tabletop(ep, i, SIZE) for i in idx]
    group.attrs["num_samples"] = len(idx)
    group.attrs["language_instruction"] = ep.instruction
    obs = group.create_group("obs")
    _dataset(obs, "robot0_joint_pos", portable(ep.qpos[idx, :6]).astype(np.float32))
    _dataset(obs, "robot0_gripper_qpos", portable(1.0 - ep.qpos[idx, 6:7]).astype(np.float32))
    eef = np.stack([ee_pose(ep.qpos[i, :6])[:3] for i in idx])
    _dataset(obs, "robot0_eef_pos", portable(eef).astype(np.float32))
    agentview = np.stack([f["third_person"] for f in frames])
    _dataset(obs, "agentview_image", agentview, chunks=(1, SIZE, SIZE, 3), compression="gzip")
    wrist = obs.create_dataset(
        "robot0_eye_in_hand_image", (len(idx),), dtype=h5py.vlen_dtype(np.uint8), track_times=False
    )
    for k, f in enumerate(frames):
        wrist[k] = np.frombuffer(encode_jpeg(f["wrist"], JPEG_QUALITY), np.uint8)
    actions = np.concatenate([ep.command[nxt, :6], 1.0 - ep.command[idx, 6:7]], axis=1)
    _dataset(group, "actions", portable(actions).astype(np.float32))
    done = np.zeros(len(idx), np.int64)
    done[-1] = 1
    _dataset(group, "rewards", done.astype(np.float64))
    _dataset(group, "dones", done)


def generate_hdf5(out: Path) -> list[Path]:
    """Write `out/robomimic_sim/demos.hdf5` (three demos); returns the files written."""
    path = out / FOLDER / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", libver=("earliest", "v110"), track_order=False) as f:
        data = f.create_group("data")
        env = {"env_name": "TabletopPickPlace", "type": 1, "env_kwargs": {"control_freq": HZ}}
        data.attrs["env_args"] = json.dumps(env, sort_keys=True)
        data.attrs["total"] = 0
        total = 0
        for k, seed in enumerate(_SEEDS):
            ep = simulate_tabletop(seed)
            _write_demo(data.create_group(f"demo_{k}"), ep)
            total += STEPS
        data.attrs["total"] = total
    return [path]
