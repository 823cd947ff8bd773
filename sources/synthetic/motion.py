"""Scripted arm motion: Cartesian keyframes blended by minimum-jerk segments, and a servo-like follower."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from vlamix.sources.synthetic.kinematics import min_jerk

__all__ = ["HOME", "Key", "interpolate", "pick_place_keys", "servo"]

HOME = np.array([0.22, 0.0, 0.16])  # tool tip at rest, arm frame
SERVO_TAU = 0.04  # seconds: follower lag behind the leader


@dataclass(frozen=True)
class Key:
    time: float
    tip: np.ndarray  # arm frame
    yaw: float
    grip: float  # 1 open, 0 closed


def pick_place_keys(t0: float, cube_tip: np.ndarray, cube_yaw: float, bowl_tip: np.ndarray) -> list[Key]:
    above = np.array([0, 0, 0.10])
    keys = [Key(t0, HOME, 0.0, 1.0)]
    for dt, tip, yaw, grip in (
        (1.4, cube_tip + above, cube_yaw, 1.0),  # reach over the cube
        (0.8, cube_tip, cube_yaw, 1.0),  # descend around it
        (0.5, cube_tip, cube_yaw, 0.0),  # close
        (0.8, cube_tip + above * 1.4, cube_yaw, 0.0),  # lift
        (1.3, bowl_tip + above * 0.8, 0.0, 0.0),  # carry over the bowl
        (0.5, bowl_tip + above * 0.3, 0.0, 0.0),  # lower
        (0.4, bowl_tip + above * 0.3, 0.0, 1.0),  # open: the cube drops
        (1.2, HOME, 0.0, 1.0),  # home
    ):
        keys.append(Key(keys[-1].time + dt, tip, yaw, grip))
    return keys


def interpolate(keys: list[Key], t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tips, yaws, grips = np.tile(keys[0].tip, (len(t), 1)), np.full(len(t), keys[0].yaw), np.ones(len(t))
    grips[:] = keys[0].grip
    for a, b in itertools.pairwise(keys):
        s = min_jerk((t - a.time) / (b.time - a.time))[:, None]
        m = t >= a.time
        tips[m] = (a.tip + s * (b.tip - a.tip))[m]
        yaws[m] = (a.yaw + s[:, 0] * (b.yaw - a.yaw))[m]
        grips[m] = (a.grip + s[:, 0] * (b.grip - a.grip))[m]
    return tips, yaws, grips


def servo(target: np.ndarray, fps: int) -> np.ndarray:
    """First-order lag of each column: what a position servo does to a leader command."""
    alpha = 1.0 - np.exp(-1.0 / (fps * SERVO_TAU))
    out = np.empty_like(target)
    out[0] = target[0]
    for i in range(1, len(target)):
        out[i] = out[i - 1] + alpha * (target[i] - out[i - 1])
    return out
