"""The cross-embodiment (CE) samples: one tabletop motion family recorded by two different robots' loggers,
as RLDS datasets whose feature names differ (and are mapped by the sources file alone).

- `widowx_sim`: BridgeData-style, 5 Hz, state = end-effector pose + gripper, action = end-effector
  deltas + gripper command (1 open), cameras `image_0` (third person) and `image_3` (wrist).
- `arm6_sim`: a generic 6-DoF arm logged robomimic-style at 15 Hz, state split into
  `joint_positions` + `gripper_position` (0 open, 1 closed), action split into `action/joint_targets` +
  `action/gripper`, instruction under `observation/natural_language_instruction`, cameras
  `agentview_image` and `eye_in_hand_image`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from vlamix.sources.synthetic.kinematics import portable
from vlamix.sources.synthetic.rlds_writer import RldsFeature, write_rlds
from vlamix.sources.synthetic.tabletop import (
    SIM_HZ,
    TabletopEpisode,
    ee_pose,
    render_tabletop,
    simulate_tabletop,
)
from vlamix.sources.synthetic.upscale import Size, upscaled

__all__ = ["generate_arm6", "generate_ce"]

JPEG_QUALITY = 85


def _jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue()


def _steps(ep: TabletopEpisode, hz: int) -> np.ndarray:
    """Simulation steps nearest to a logger ticking at `hz` (within 10 ms when hz does not divide 50)."""
    ticks = np.round(np.arange(0.0, ep.t[-1], 1.0 / hz) * SIM_HZ).astype(int)
    return np.unique(np.minimum(ticks, len(ep.t) - 1))


def _flags(n: int) -> dict[str, np.ndarray]:
    first, last = np.zeros(n, np.int64), np.zeros(n, np.int64)
    first[0], last[-1] = 1, 1
    return {"steps/is_first": first, "steps/is_last": last, "steps/is_terminal": last.copy()}


def _widowx_episode(ep: TabletopEpisode, size: int) -> dict:
    idx = _steps(ep, 5)
    pose = np.stack([ee_pose(ep.qpos[i, :6]) for i in idx])
    target = np.stack([ee_pose(ep.command[i, :6]) for i in idx])
    nxt = np.concatenate([target[1:], target[-1:]])
    delta = nxt - pose
    delta[:, 3:] = np.angle(np.exp(1j * delta[:, 3:]))  # wrap Euler deltas to [-pi, pi]
    frames = [render_tabletop(ep, i, size) for i in idx]
    return {
        "steps/observation/state": portable(np.concatenate([pose, ep.qpos[idx, 6:7]], axis=1)).astype(
            np.float32
        ),
        "steps/action": portable(np.concatenate([delta, ep.command[idx, 6:7]], axis=1)).astype(np.float32),
        "steps/observation/image_0": [_jpeg(f["third_person"]) for f in frames],
        "steps/observation/image_3": [_jpeg(f["wrist"]) for f in frames],
        "steps/language_instruction": [ep.instruction] * len(idx),
        **_flags(len(idx)),
    }


def _arm6_episode(ep: TabletopEpisode, size: int, upscale: Size | None = None) -> dict:
    idx = _steps(ep, 15)
    nxt = np.concatenate([idx[1:], idx[-1:]])
    frames = [{k: upscaled(v, upscale) for k, v in render_tabletop(ep, i, size).items()} for i in idx]
    return {
        "steps/observation/joint_positions": portable(ep.qpos[idx, :6]).astype(np.float32),
        "steps/observation/gripper_position": portable(1.0 - ep.qpos[idx, 6:7]).astype(np.float32),
        "steps/action/joint_targets": portable(ep.command[nxt, :6]).astype(np.float32),
        "steps/action/gripper": portable(1.0 - ep.command[idx, 6:7]).astype(np.float32),
        "steps/observation/agentview_image": [_jpeg(f["third_person"]) for f in frames],
        "steps/observation/eye_in_hand_image": [_jpeg(f["wrist"]) for f in frames],
        "steps/observation/natural_language_instruction": [ep.instruction] * len(idx),
        **_flags(len(idx)),
    }


_FLAGS = [RldsFeature(f"steps/{k}", "Scalar", "bool") for k in ("is_first", "is_last", "is_terminal")]
WIDOWX_FEATURES = [
    RldsFeature(
        "steps/observation/state",
        "Tensor",
        "float32",
        (7,),
        "End-effector xyz, roll/pitch/yaw, gripper (1 open).",
    ),
    RldsFeature(
        "steps/action", "Tensor", "float32", (7,), "End-effector deltas (xyz, rpy) and gripper command."
    ),
    RldsFeature("steps/observation/image_0", "Image", shape=(128, 128, 3)),
    RldsFeature("steps/observation/image_3", "Image", shape=(128, 128, 3)),
    RldsFeature("steps/language_instruction", "Text"),
    *_FLAGS,
]
ARM6_FEATURES = [
    RldsFeature("steps/observation/joint_positions", "Tensor", "float32", (6,)),
    RldsFeature("steps/observation/gripper_position", "Tensor", "float32", (1,), "0 open, 1 closed."),
    RldsFeature("steps/action/joint_targets", "Tensor", "float32", (6,)),
    RldsFeature("steps/action/gripper", "Tensor", "float32", (1,), "0 open, 1 closed."),
    RldsFeature("steps/observation/agentview_image", "Image", shape=(96, 96, 3)),
    RldsFeature("steps/observation/eye_in_hand_image", "Image", shape=(96, 96, 3)),
    RldsFeature("steps/observation/natural_language_instruction", "Text"),
    *_FLAGS,
]


def generate_ce(out: Path, seed: int = 0, widowx_episodes: int = 6, arm6_episodes: int = 4) -> list[Path]:
    """Write `out/widowx_sim/` and `out/arm6_sim/`; the last episode of each goes to the val split."""
    eps = [_widowx_episode(simulate_tabletop(seed * 1000 + 100 + i), 128) for i in range(widowx_episodes)]
    written = write_rlds(
        out / "widowx_sim", "widowx_sim", WIDOWX_FEATURES, {"train": eps[:-1], "val": eps[-1:]}
    )
    return written + generate_arm6(out, seed, arm6_episodes)


def generate_arm6(out: Path, seed: int = 0, episodes: int = 4, upscale: Size | None = None) -> list[Path]:
    """Write `out/arm6_sim/` alone; `upscale` (height, width) resizes every 96x96 render before it is
    JPEG-encoded (the benchmarks' camera-size frames), and features.json says the new shape."""
    eps = [_arm6_episode(simulate_tabletop(seed * 1000 + 200 + i), 96, upscale) for i in range(episodes)]
    features = ARM6_FEATURES
    if upscale is not None:
        features = [
            RldsFeature(f.name, f.kind, f.dtype, (*upscale, 3), f.description) if f.kind == "Image" else f
            for f in ARM6_FEATURES
        ]
    return write_rlds(out / "arm6_sim", "arm6_sim", features, {"train": eps[:-1], "val": eps[-1:]})
