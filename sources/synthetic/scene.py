"""Turn a simulated episode state into camera images: a head camera on the robot and one on each wrist."""

from __future__ import annotations

import numpy as np

from vlamix.sources.synthetic.kinematics import ArmGeometry, forward, rot_z
from vlamix.sources.synthetic.render import Camera, Disc, Polygon, Segment, box_faces, look_at, render
from vlamix.sources.synthetic.scenario import ARM_MOUNTS, CUBE, FINGER_SPAN, TABLE_TOP, EpisodeState

__all__ = ["CAMERAS", "render_frame"]

CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")
_TABLE = (np.array([0.68, 0.0]), np.array([0.75, 1.5]))  # centre xy and size in the world
_ARM_COLORS = ((35, 35, 38), (35, 35, 38))
_GRID = 0.5
# Drawing order: the floor, then the table (and the robot's body), then what lies on the table, then
# everything that moves above it. Big polygons cannot be depth-sorted against small ones reliably, so
# the layers carry what the scene's geometry guarantees.
FLOOR, TABLE, ON_TABLE, MOVING = 0, 1, 2, 3


def _static_scene(state: EpisodeState) -> list:
    """The floor with its tile joints, the table and the bowl: fixed in the world."""
    floor = np.array([[-6, -6, 0], [6, -6, 0], [6, 6, 0], [-6, 6, 0]], float)
    prims: list = [Polygon(floor, (150, 128, 104), FLOOR)]
    for k in np.arange(-6, 6.01, _GRID):
        for a, b in ((0, 1), (1, 0)):  # a joint along y at x = k, then along x at y = k
            strip = np.zeros((4, 3))
            strip[:, a] = [k - 0.01, k + 0.01, k + 0.01, k - 0.01]
            strip[:, b] = [-6, -6, 6, 6]
            strip[:, 2] = 0.001
            prims.append(Polygon(strip if a == 0 else strip[::-1], (110, 92, 74), FLOOR))  # both face up
    centre, size = _TABLE
    prims += box_faces(
        np.array([*centre, TABLE_TOP / 2]), np.array([*size, TABLE_TOP]), 0.0, (222, 214, 196), TABLE
    )
    ring = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    for radius, height, color in ((0.085, 0.002, (60, 60, 70)), (0.06, 0.003, (235, 235, 240))):
        pts = np.stack([np.cos(ring) * radius, np.sin(ring) * radius, np.full_like(ring, height)], axis=1)
        prims.append(Polygon(state.bowl + pts, color, ON_TABLE))
    return prims


def _robot(state: EpisodeState, i: int, geo: ArmGeometry) -> tuple[list, list[tuple[np.ndarray, np.ndarray]]]:
    """Base, arms and fingers at step i, plus each hand's world position and rotation (for wrist cameras).
    Each arm's forearm and hand links are tagged so that arm's wrist camera, which sits on them, skips them."""
    x, y, heading = state.base_pose[i]
    rot = rot_z(heading)
    origin = np.array([x, y, 0.0])
    prims: list = box_faces(
        origin + rot @ np.array([-0.25, 0, 0.35]), np.array([0.5, 0.7, 0.7]), heading, (70, 70, 78), TABLE
    )
    hands = []
    for arm in range(2):
        q = state.qpos[i, 7 * arm : 7 * arm + 6]
        pose = forward(q, geo)
        to_world = lambda p, m=ARM_MOUNTS[arm]: origin + rot @ (p + m)  # noqa: E731
        chain = [to_world(p) for p in (pose.base, pose.shoulder, pose.elbow, pose.wrist, pose.tip)]
        mounted = f"hand_{arm}"  # the forearm and hand carry this arm's wrist camera
        for a, b, r, tag in zip(
            chain, chain[1:], (0.03, 0.025, 0.022, 0.018), ("", "", mounted, mounted), strict=False
        ):
            prims.append(Segment(a, b, r, _ARM_COLORS[arm], MOVING, tag))
        prims.append(Disc(chain[2], 0.03, (90, 90, 96), MOVING))
        hand = rot @ pose.hand
        opening = FINGER_SPAN * float(np.clip(state.qpos[i, 7 * arm + 6], 0, 1)) / 2 + 0.006
        for side in (-1, 1):
            root = chain[4] - hand[:, 0] * geo.finger + side * hand[:, 1] * opening
            prims.append(Segment(root, root + hand[:, 0] * geo.finger, 0.007, (180, 180, 186), MOVING))
        hands.append((chain[4], hand))
    return prims, hands


def _cameras(state: EpisodeState, i: int, hands, width: int, height: int) -> list[Camera]:
    x, y, heading = state.base_pose[i]
    rot = rot_z(heading)
    eye = np.array([x, y, 0]) + rot @ np.array([-0.05, 0.0, 1.28])
    target = np.array([x, y, 0]) + rot @ np.array([0.55, 0.0, TABLE_TOP])
    cams = [Camera(eye, look_at(eye, target), width, height, 78.0)]
    for tip, hand in hands:
        eye = tip - hand[:, 0] * 0.13 + hand[:, 2] * 0.07
        up = -hand[:, 2]
        cams.append(Camera(eye, look_at(eye, tip + hand[:, 0] * 0.12, up), width, height, 90.0))
    return cams


def render_frame(state: EpisodeState, i: int, width: int, height: int) -> dict[str, np.ndarray]:
    """The three camera images of step i, keyed by their Mobile-ALOHA names."""
    geo = ArmGeometry()
    prims = _static_scene(state)
    for cube, color in zip(state.cubes[i], state.cube_colors, strict=True):
        prims += box_faces(cube[:3], np.full(3, CUBE), float(cube[3]), color, MOVING)
    robot, hands = _robot(state, i, geo)
    prims += robot
    cams = _cameras(state, i, hands, width, height)
    images = {}
    for k, (name, cam) in enumerate(zip(CAMERAS, cams, strict=True)):
        mounted_on = f"hand_{k - 1}" if k else None  # the head camera sits on no arm
        images[name] = render(cam, [p for p in prims if not p.tag or p.tag != mounted_on])
    return images
