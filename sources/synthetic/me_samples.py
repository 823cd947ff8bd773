"""The static-arm (ME) samples: a 6-DoF arm at a table in visibly different rooms, recorded as LeRobot
datasets, v2.1 (h264) and v3.0 (AV1, episodes concatenated in one file per camera). Each episode's room
is a field of its row in meta/episodes (`room`), which the sources file reads as its environment.

Every video frame carries its episode-local frame index as a 10-bit code of 8x8 black/white blocks along
the top-left edge, large enough to survive lossy encoding: a reader that pairs parquet rows with the
wrong video frames is caught by reading the code back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlamix.sources.synthetic.kinematics import portable
from vlamix.sources.synthetic.lerobot_writer import LeRobotEpisode, write_lerobot
from vlamix.sources.synthetic.tabletop import SIM_HZ, render_tabletop, simulate_tabletop
from vlamix.sources.synthetic.upscale import Size, upscaled

__all__ = ["CODE_BITS", "FPS", "ROOMS", "ROOM_NAMES", "generate_me", "read_frame_code", "stamp_frame_code"]

FPS = 30
SIZE = (96, 128)  # height, width
CODE_BITS, BLOCK = 10, 8
JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper"]
ROOMS = (  # table, floor, wall: kitchen, workshop, living room, lab
    {"table_color": (210, 180, 140), "floor_color": (150, 110, 80), "background": (235, 225, 200)},
    {"table_color": (90, 90, 95), "floor_color": (60, 70, 60), "background": (160, 175, 190)},
    {"table_color": (140, 70, 50), "floor_color": (180, 160, 120), "background": (120, 150, 120)},
    {"table_color": (240, 240, 240), "floor_color": (200, 200, 205), "background": (90, 100, 140)},
)
ROOM_NAMES = ("kitchen", "workshop", "living_room", "lab")  # ROOMS' names, in its order


def stamp_frame_code(image: np.ndarray, index: int) -> np.ndarray:
    out = image.copy()
    for b in range(CODE_BITS):
        out[:BLOCK, b * BLOCK : (b + 1) * BLOCK] = 255 if (index >> b) & 1 else 0
    return out


def read_frame_code(image: np.ndarray, top: int = 0, left: int = 0, scale: float = 1.0) -> int:
    """Read the code back from an image that may have been scaled and offset (resize-with-pad)."""
    value = 0
    for b in range(CODE_BITS):
        y, x = top + round(BLOCK / 2 * scale), left + round((b * BLOCK + BLOCK / 2) * scale)
        if image[y, x].mean() > 128:
            value |= 1 << b
    return value


def _episode(seed: int, room: int, upscale: Size | None = None) -> LeRobotEpisode:
    ep = simulate_tabletop(seed, ROOMS[room])
    steps = np.unique(
        np.minimum(np.round(np.arange(0.0, ep.t[-1], 1.0 / FPS) * SIM_HZ).astype(int), len(ep.t) - 1)
    )
    videos: dict[str, list[np.ndarray]] = {"top": [], "wrist": []}
    for k, i in enumerate(steps):
        frames = render_tabletop(ep, i, SIZE[1])
        for cam, name in (("top", "third_person"), ("wrist", "wrist")):
            image = frames[name][
                (SIZE[1] - SIZE[0]) // 2 : (SIZE[1] + SIZE[0]) // 2
            ]  # 4:3 crop of the square render
            videos[cam].append(upscaled(stamp_frame_code(image, k), upscale))
    return LeRobotEpisode(
        portable(ep.qpos[steps]),
        portable(ep.command[steps]),
        videos,
        ep.instruction,
        {"room": ROOM_NAMES[room]},
    )


def generate_me(out: Path, seed: int = 0, upscale: Size | None = None, episodes: int = 3) -> list[Path]:
    """Write `out/lerobot_v21/` (h264) and `out/lerobot_v30/` (AV1), `episodes` each (3 bundled);
    `upscale` (height, width) resizes every rendered frame before it is encoded (the benchmarks'
    camera-size frames)."""
    names = (JOINTS, JOINTS)
    v21 = [_episode(seed * 1000 + 300 + i, i % len(ROOMS), upscale) for i in range(episodes)]
    write_lerobot(out / "lerobot_v21", "v2.1", v21, FPS, names, codec="libx264")
    v30 = [_episode(seed * 1000 + 400 + i, (i + 1) % len(ROOMS), upscale) for i in range(episodes)]
    write_lerobot(out / "lerobot_v30", "v3.0", v30, FPS, names, codec="libsvtav1")
    return [out / "lerobot_v21", out / "lerobot_v30"]
