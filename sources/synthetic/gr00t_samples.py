"""The GR00T-flavoured LeRobot sample: a LeRobot v2.1 dataset (h264) of the 6-DoF arm at a table, plus
NVIDIA GR00T's `meta/modality.json`, which splits the 7-wide state and action into the parts
`single_arm` [0, 6) and `gripper` [6, 7), renames the `top` camera `ego_view`, and names `task_index` as
the task-description annotation.

Its `meta/info.json` names the dims generically (`motor_0` ... `motor_6`): only the modality file says
what they are, and its embodiment spec (samples/embodiments/sim_arm6_gr00t.yaml) names its dims after
the parts (`single_arm_0` ... `single_arm_5`, `gripper`) and its cameras after the modality's videos.
Two short episodes (30 frames of a pick-and-place each, 64x64 cameras) keep it tiny.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vlamix.sources.synthetic.kinematics import portable
from vlamix.sources.synthetic.lerobot_writer import LeRobotEpisode, write_lerobot
from vlamix.sources.synthetic.me_samples import ROOM_NAMES, ROOMS
from vlamix.sources.synthetic.tabletop import render_tabletop, simulate_tabletop

__all__ = ["FOLDER", "MODALITY", "generate_gr00t"]

FOLDER = "gr00t_sim"
FPS, FRAMES, SIZE = 30, 30, 64
NAMES = [f"motor_{k}" for k in range(7)]
MODALITY = {
    "state": {"single_arm": {"start": 0, "end": 6}, "gripper": {"start": 6, "end": 7}},
    "action": {
        "single_arm": {"start": 0, "end": 6, "absolute": True},
        "gripper": {"start": 6, "end": 7, "absolute": True, "range": [0.0, 1.0]},
    },
    "video": {
        "ego_view": {"original_key": "observation.images.top"},
        "wrist": {"original_key": "observation.images.wrist"},
    },
    "annotation": {"human.task_description": {"original_key": "task_index"}},
}


def _episode(seed: int, room: int) -> LeRobotEpisode:
    """FRAMES evenly spaced steps of a whole simulated pick-and-place (so the arm moves and grasps), in
    ROOMS[room], named in meta/episodes' `room` field."""
    ep = simulate_tabletop(seed, ROOMS[room])
    steps = np.round(np.linspace(0, len(ep.t) - 1, FRAMES)).astype(int)
    videos: dict[str, list[np.ndarray]] = {"top": [], "wrist": []}
    for i in steps:
        frames = render_tabletop(ep, int(i), SIZE)
        videos["top"].append(frames["third_person"])
        videos["wrist"].append(frames["wrist"])
    return LeRobotEpisode(
        portable(ep.qpos[steps]),
        portable(ep.command[steps]),
        videos,
        ep.instruction,
        {"room": ROOM_NAMES[room]},
    )


def generate_gr00t(out: Path, seed: int = 0) -> list[Path]:
    """Write `out/gr00t_sim/`: LeRobot v2.1 (2 episodes, h264) with `meta/modality.json`."""
    root = out / FOLDER
    episodes = [_episode(seed * 1000 + 500 + i, (i + 2) % len(ROOMS)) for i in range(2)]
    write_lerobot(root, "v2.1", episodes, FPS, (NAMES, NAMES), codec="libx264")
    (root / "meta/modality.json").write_text(json.dumps(MODALITY, indent=4) + "\n")
    return [root]
