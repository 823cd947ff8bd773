"""A single arm at a table: a scripted pick-and-place, simulated at 50 Hz and sampled at the robot's own
control rate, with a static third-person camera and a wrist camera rendered from the same state.

Shared by the cross-embodiment (CE) samples: the same motion is recorded as end-effector deltas for one
robot and as joint targets for another, the way different labs log different things.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlamix.sources.synthetic.kinematics import ArmGeometry, forward, inverse_pointing_down, rot_y
from vlamix.sources.synthetic.motion import interpolate, pick_place_keys, servo
from vlamix.sources.synthetic.render import Camera, Disc, Polygon, Segment, box_faces, look_at, render

__all__ = ["TabletopEpisode", "ee_pose", "render_tabletop", "simulate_tabletop"]

SIM_HZ = 50
TABLE_TOP = 0.75
CUBE = 0.04
MOUNT = np.array([0.0, 0.0, TABLE_TOP + 0.03])  # arm base in the world
FINGER_SPAN = 0.08
_COLORS = {
    "red": (200, 40, 40),
    "blue": (40, 80, 200),
    "green": (40, 160, 60),
    "yellow": (230, 190, 30),
    "orange": (235, 120, 30),
}
_TABLES = ((205, 170, 125), (170, 170, 176), (120, 90, 60), (225, 225, 215))
_TARGETS = {"plate": (235, 235, 240), "bowl": (60, 60, 70), "tray": (150, 110, 70)}


@dataclass(frozen=True)
class TabletopEpisode:
    """States at the simulation rate (50 Hz); recorders sample them at their own rate."""

    t: np.ndarray  # (T,) seconds
    command: np.ndarray  # (T, 7) leader joints + gripper (1 open, 0 closed)
    qpos: np.ndarray  # (T, 7) follower joints + gripper
    cube: np.ndarray  # (T, 4) x, y, z, yaw in the world
    target: np.ndarray  # (3,) where the cube goes
    cube_color: tuple[int, int, int]
    target_color: tuple[int, int, int]
    table_color: tuple[int, int, int]
    instruction: str
    floor_color: tuple[int, int, int] = (95, 95, 105)
    background: tuple[int, int, int] = (200, 196, 184)  # the wall behind the table


def simulate_tabletop(seed: int, environment: dict | None = None) -> TabletopEpisode:
    """One episode fully determined by `seed`; `environment` may set table_color, floor_color and
    background (the room the arm stands in)."""
    rng = np.random.default_rng(seed)
    cube_name = str(rng.choice(list(_COLORS)))
    target_name = str(rng.choice(list(_TARGETS)))
    cube_xy = np.array([rng.uniform(0.25, 0.38), rng.uniform(-0.2, 0.2)])
    target = np.array([rng.uniform(0.3, 0.42), -np.sign(cube_xy[1]) * rng.uniform(0.1, 0.22), TABLE_TOP])
    yaw = float(rng.uniform(-0.7, 0.7))
    keys = pick_place_keys(
        0.4,
        np.array([*cube_xy, TABLE_TOP + CUBE / 2]) - MOUNT,
        yaw,
        target + np.array([0, 0, CUBE / 2]) - MOUNT,
    )
    total = keys[-1].time + 0.4
    t = np.arange(round(total * SIM_HZ)) / SIM_HZ
    tips, yaws, grips = interpolate(keys, t)
    roll = 0.03 * np.sin(2 * np.pi * t / rng.uniform(3, 6))
    joints = np.stack(
        [inverse_pointing_down(p, y, ArmGeometry(), r) for p, y, r in zip(tips, yaws, roll, strict=True)]
    )
    command = np.concatenate([joints, grips[:, None]], axis=1)
    qpos = servo(command, SIM_HZ)
    grasp, release = keys[3].time, keys[6].time + 0.2
    held = (t >= grasp - 0.25) & (t < release)
    qpos[held, 6] = np.maximum(qpos[held, 6], (1 - (FINGER_SPAN - CUBE) / FINGER_SPAN) * 0.97)
    cube = np.tile([*cube_xy, TABLE_TOP + CUBE / 2, yaw], (len(t), 1))
    carry = np.flatnonzero((t >= grasp) & (t < release))
    for i in carry:
        cube[i, :3] = forward(qpos[i, :6]).tip + MOUNT
    if len(carry):
        cube[carry[-1] + 1 :, :3] = [*cube[carry[-1], :2], TABLE_TOP + CUBE / 2]
    instruction = f"put the {cube_name} block on the {target_name}"
    return TabletopEpisode(
        t,
        command,
        qpos,
        cube,
        target,
        _COLORS[cube_name],
        _TARGETS[target_name],
        _TABLES[seed % len(_TABLES)],
        instruction,
    )


def _euler(r: np.ndarray) -> np.ndarray:
    """Roll, pitch, yaw (x-y-z extrinsic) of a rotation matrix."""
    pitch = -np.arcsin(np.clip(r[2, 0], -1.0, 1.0))
    return np.array([np.arctan2(r[2, 1], r[2, 2]), pitch, np.arctan2(r[1, 0], r[0, 0])])


_DOWN = rot_y(np.pi / 2)  # the hand pointing straight down: orientation zero of the end-effector logs


def ee_pose(q: np.ndarray) -> np.ndarray:
    """Tool tip position (arm frame) and roll/pitch/yaw relative to pointing down: what an end-effector
    recorder logs (relative to a reference pose, so the angles stay far from the +-pi wrap)."""
    pose = forward(q)
    return np.concatenate([pose.tip, _euler(pose.hand @ _DOWN.T)])


def render_tabletop(ep: TabletopEpisode, i: int, size: int) -> dict[str, np.ndarray]:
    """`third_person` and `wrist` images at simulation step i."""
    prims: list = [
        Polygon(np.array([[-4, -4, 0], [4, -4, 0], [4, 4, 0], [-4, 4, 0]], float), (95, 95, 105), 0)
    ]
    prims += box_faces(
        np.array([0.35, 0.0, TABLE_TOP / 2]), np.array([0.9, 1.1, TABLE_TOP]), 0.0, ep.table_color, 1
    )
    ring = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    disc = np.stack([np.cos(ring) * 0.07, np.sin(ring) * 0.07, np.full_like(ring, 0.002)], axis=1)
    prims.append(Polygon(ep.target + disc, ep.target_color, 2))
    prims += box_faces(ep.cube[i, :3], np.full(3, CUBE), float(ep.cube[i, 3]), ep.cube_color, 3)
    pose = forward(ep.qpos[i, :6])
    chain = [p + MOUNT for p in (pose.base, pose.shoulder, pose.elbow, pose.wrist, pose.tip)]
    for a, b, r, tag in zip(
        chain, chain[1:], (0.03, 0.025, 0.022, 0.018), ("", "", "hand", "hand"), strict=False
    ):
        prims.append(Segment(a, b, r, (40, 40, 44), 3, tag))
    prims.append(Disc(chain[2], 0.03, (90, 90, 96), 3))
    opening = FINGER_SPAN * float(np.clip(ep.qpos[i, 6], 0, 1)) / 2 + 0.006
    for side in (-1, 1):
        root = chain[4] - pose.hand[:, 0] * 0.045 + side * pose.hand[:, 1] * opening
        prims.append(Segment(root, root + pose.hand[:, 0] * 0.045, 0.007, (180, 180, 186), 3))
    eye = np.array([0.05, 0.5, TABLE_TOP + 0.42])
    third = Camera(eye, look_at(eye, np.array([0.33, 0.0, TABLE_TOP])), size, size, 65.0)
    weye = chain[4] - pose.hand[:, 0] * 0.13 + pose.hand[:, 2] * 0.07
    wrist = Camera(weye, look_at(weye, chain[4] + pose.hand[:, 0] * 0.12, -pose.hand[:, 2]), size, size, 90.0)
    return {
        "third_person": render(third, prims),
        "wrist": render(wrist, [p for p in prims if p.tag != "hand"]),
    }
