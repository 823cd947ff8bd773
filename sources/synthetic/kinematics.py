"""Forward and inverse kinematics of a ViperX-300-like 6-DoF arm, and minimum-jerk profiles.

Joint order follows the ALOHA convention: waist, shoulder, elbow, forearm_roll, wrist_angle,
wrist_rotate. Angles are radians; lengths metres. The arm's own frame has x forward, z up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ArmGeometry",
    "ArmPose",
    "forward",
    "inverse_pointing_down",
    "min_jerk",
    "portable",
    "rot_x",
    "rot_y",
    "rot_z",
]


def portable(x: np.ndarray, decimals: int = 6) -> np.ndarray:
    """`x` in float64 rounded to `decimals` places, -0.0 made 0.0: numpy's trigonometry and BLAS differ in
    the last bits between CPUs (their SIMD paths), and the generated samples must be the same bytes on
    every machine. A micro-radian is far below any real encoder's resolution."""
    return np.round(np.asarray(x, dtype=np.float64), decimals) + 0.0


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


@dataclass(frozen=True)
class ArmGeometry:
    shoulder_height: float = 0.127
    upper_arm: float = 0.305
    forearm: float = 0.30
    hand: float = 0.16
    finger: float = 0.045


@dataclass(frozen=True)
class ArmPose:
    """Points of one arm (in the arm's frame) and the hand's rotation, for rendering and grasping."""

    base: np.ndarray
    shoulder: np.ndarray
    elbow: np.ndarray
    wrist: np.ndarray
    tip: np.ndarray
    hand: np.ndarray  # 3x3: columns are the hand's x (tool axis), y (finger opening), z


def forward(q: np.ndarray, geo: ArmGeometry = ArmGeometry()) -> ArmPose:
    """Joint angles (6,) -> link points. With every joint at 0 the upper arm stands vertical and the
    forearm and hand point forward, as on the real arm."""
    r0 = rot_z(q[0])
    shoulder = np.array([0.0, 0.0, geo.shoulder_height])
    r1 = r0 @ rot_y(q[1] - np.pi / 2)
    elbow = shoulder + r1 @ np.array([geo.upper_arm, 0.0, 0.0])
    r2 = r1 @ rot_y(np.pi / 2 + q[2]) @ rot_x(q[3])
    wrist = elbow + r2 @ np.array([geo.forearm, 0.0, 0.0])
    r4 = r2 @ rot_y(q[4]) @ rot_x(q[5])
    tip = wrist + r4 @ np.array([geo.hand, 0.0, 0.0])
    return ArmPose(np.zeros(3), shoulder, elbow, wrist, tip, r4)


def inverse_pointing_down(
    target: np.ndarray, yaw: float, geo: ArmGeometry = ArmGeometry(), forearm_roll: float = 0.0
) -> np.ndarray:
    """Joint angles that put the tool tip at `target` (arm frame) pointing straight down, the hand turned
    by `yaw` about the vertical (the fingers close along yaw + 90 degrees). Raises ValueError when the
    target is out of reach."""
    wrist = np.asarray(target, dtype=np.float64) + np.array([0.0, 0.0, geo.hand])
    waist = float(np.arctan2(wrist[1], wrist[0]))
    r = float(np.hypot(wrist[0], wrist[1]))
    dz = float(wrist[2] - geo.shoulder_height)
    l1, l2 = geo.upper_arm, geo.forearm
    d = (r * r + dz * dz - l1 * l1 - l2 * l2) / (2 * l1 * l2)
    if not -1.0 <= d <= 1.0:
        raise ValueError(f"target {np.round(target, 3).tolist()} is out of the arm's reach")
    gamma = -float(np.arccos(d))  # elbow up: the forearm bends down relative to the upper arm
    alpha = np.arctan2(dz, r) - np.arctan2(l2 * np.sin(gamma), l1 + l2 * np.cos(gamma))
    shoulder = np.pi / 2 - alpha
    forearm_pitch = -(gamma + alpha)  # angle of the forearm below horizontal
    elbow = forearm_pitch - shoulder
    wrist_angle = np.pi / 2 - shoulder - elbow
    # With the tool pointing down, rolling the hand turns the fingers about the vertical axis.
    wrist_rotate = float(np.angle(np.exp(1j * (waist - yaw))))
    return np.array([waist, shoulder, elbow, forearm_roll, wrist_angle, wrist_rotate])


def min_jerk(tau: np.ndarray) -> np.ndarray:
    """The minimum-jerk blend 10t^3 - 15t^4 + 6t^5 on [0, 1]: zero velocity and acceleration at both
    ends, so consecutive segments join smoothly."""
    t = np.clip(tau, 0.0, 1.0)
    return t**3 * (10.0 + t * (-15.0 + 6.0 * t))
