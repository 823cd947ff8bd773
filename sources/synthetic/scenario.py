"""A scripted bimanual mobile pick-and-place, simulated kinematically at the control rate.

The robot drives up to a table, each arm picks a cube and drops it in a bowl (a close and an open of
each gripper), then the robot backs away. Leader-arm commands (`action`) follow minimum-jerk Cartesian
segments through inverse kinematics; the follower (`qpos`) lags them like a position-controlled servo,
and its gripper stalls on the cube while the command says closed, as on the real robot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlamix.sources.synthetic.kinematics import ArmGeometry, forward, inverse_pointing_down
from vlamix.sources.synthetic.motion import interpolate, pick_place_keys, servo

__all__ = ["ARM_MOUNTS", "CUBE", "TABLE_TOP", "EpisodeState", "simulate"]

TABLE_TOP = 0.72  # metres above the floor
CUBE = 0.04  # cube edge, metres
ARM_MOUNTS = (np.array([0.10, 0.25, 0.76]), np.array([0.10, -0.25, 0.76]))  # left, right; base frame
FINGER_SPAN = 0.08  # finger opening at gripper position 1.0


@dataclass(frozen=True)
class EpisodeState:
    """Everything over time, one row per control step."""

    fps: int
    action: np.ndarray  # (T, 14) leader joints + grippers (ALOHA order; gripper 1 = open)
    qpos: np.ndarray  # (T, 14) follower joints + grippers
    qvel: np.ndarray  # (T, 14)
    base_action: np.ndarray  # (T, 2) linear m/s, angular rad/s
    base_pose: np.ndarray  # (T, 3) x, y, heading in the world (the table's frame)
    cubes: np.ndarray  # (T, 2, 4) x, y, z, yaw of each cube in the world
    cube_colors: tuple[tuple[int, int, int], ...]
    bowl: np.ndarray  # (3,) world position of the bowl's centre on the table
    task: str


def _base_profile(rng: np.random.Generator, fps: int, approach: float, depart: float, total: float):
    """Drive-up then back-off velocities, each a minimum-jerk move, integrated into poses whose frame
    is the robot's pose at the end of the approach."""
    n = round(total * fps)
    t = np.arange(n) / fps
    dist, turn = rng.uniform(0.5, 0.9), rng.uniform(-0.35, 0.35)
    back = rng.uniform(0.3, 0.5)

    def speed(t0: float, dur: float, amount: float) -> np.ndarray:
        tau = np.clip((t - t0) / dur, 0, 1)
        return amount * 30 * tau**2 * (1 - tau) ** 2 / dur

    v = speed(0.0, approach, dist) - speed(total - depart, depart, back)
    w = speed(0.0, approach, turn)
    pose = np.zeros((n, 3))
    for i in range(1, n):
        x, y, h = pose[i - 1]
        pose[i] = (x + v[i - 1] * np.cos(h) / fps, y + v[i - 1] * np.sin(h) / fps, h + w[i - 1] / fps)
    k = round(approach * fps)
    x0, y0, h0 = pose[k]
    c, s = np.cos(-h0), np.sin(-h0)
    rel = pose - [x0, y0, 0]
    pose = np.stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1], pose[:, 2] - h0], axis=1)
    return np.stack([v, w], axis=1), pose


def simulate(seed: int, fps: int = 50) -> EpisodeState:
    """One episode, fully determined by `seed`."""
    rng = np.random.default_rng(seed)
    geo = ArmGeometry()
    approach, depart = rng.uniform(1.5, 2.2), rng.uniform(1.3, 1.8)
    start_left = approach + 0.3
    start_right = start_left + rng.uniform(1.9, 2.6)
    total = start_right + 7.0 + 0.3 + depart
    base_action, base_pose = _base_profile(rng, fps, approach, depart, total)
    t = np.arange(len(base_pose)) / fps

    bowl = np.array([rng.uniform(0.42, 0.5), rng.uniform(-0.05, 0.05), TABLE_TOP])
    cube_xy = [
        np.array([rng.uniform(0.33, 0.46), rng.uniform(0.26, 0.42)]),
        np.array([rng.uniform(0.33, 0.46), rng.uniform(-0.42, -0.26)]),
    ]
    cube_yaw = rng.uniform(-0.6, 0.6, size=2)
    palette = [(200, 40, 40), (40, 80, 200), (40, 160, 60), (230, 190, 30), (150, 60, 170)]
    picks = rng.choice(len(palette), size=2, replace=False)
    colors = tuple(palette[i] for i in picks)
    names = {0: "red", 1: "blue", 2: "green", 3: "yellow", 4: "purple"}

    action = np.zeros((len(t), 14))
    grasp_windows = []
    for arm, t0 in ((0, start_left), (1, start_right)):
        mount = ARM_MOUNTS[arm]
        cube_tip = np.array([*cube_xy[arm], TABLE_TOP + CUBE / 2]) - mount
        keys = pick_place_keys(
            t0, cube_tip, float(cube_yaw[arm]), bowl + np.array([0.0, 0.0, CUBE / 2]) - mount
        )
        tips, yaws, grips = interpolate(keys, t)
        roll = 0.03 * np.sin(
            2 * np.pi * t / rng.uniform(3, 6) + rng.uniform(0, 6)
        )  # a real arm never holds it at 0
        joints = np.stack(
            [inverse_pointing_down(p, y, geo, r) for p, y, r in zip(tips, yaws, roll, strict=True)]
        )
        action[:, 7 * arm : 7 * arm + 6] = joints
        action[:, 7 * arm + 6] = grips
        grasp_windows.append((keys[3].time, keys[6].time + 0.2))  # closed on the cube .. fingers part

    qpos = servo(action, fps)
    stall = 1.0 - (FINGER_SPAN - CUBE) / FINGER_SPAN  # the fingers touch the cube at this position
    cubes = np.zeros((len(t), 2, 4))
    for arm in range(2):
        g = 7 * arm + 6
        held = (t >= grasp_windows[arm][0] - 0.25) & (t < grasp_windows[arm][1])
        qpos[held, g] = np.maximum(qpos[held, g], stall * 0.97)
        cubes[:, arm, :2], cubes[:, arm, 2], cubes[:, arm, 3] = (
            cube_xy[arm],
            TABLE_TOP + CUBE / 2,
            cube_yaw[arm],
        )
        carry = (t >= grasp_windows[arm][0]) & (t < grasp_windows[arm][1])
        mount = ARM_MOUNTS[arm]
        for i in np.flatnonzero(carry):
            cubes[i, arm, :3] = forward(qpos[i, 7 * arm : 7 * arm + 6], geo).tip + mount
        after = t >= grasp_windows[arm][1]
        if carry.any():
            last = cubes[np.flatnonzero(carry)[-1], arm]
            cubes[after, arm, :3] = [last[0], last[1], TABLE_TOP + CUBE / 2]
            cubes[after, arm, 3] = cube_yaw[arm]
    qpos += rng.normal(0.0, 2e-4, size=qpos.shape)  # encoder noise
    qvel = np.gradient(qpos, 1.0 / fps, axis=0)
    task = f"put the {names[picks[0]]} cube and the {names[picks[1]]} cube in the bowl"
    return EpisodeState(fps, action, qpos, qvel, base_action, base_pose, cubes, colors, bowl, task)
