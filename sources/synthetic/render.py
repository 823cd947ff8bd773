"""A small painter's-algorithm renderer: pinhole cameras over flat-shaded 3-D primitives.

Enough to give every camera of a synthetic episode an image that follows the simulated state: the arms,
the grasped objects and the floor move in the picture exactly as the joints and the base do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["Camera", "Disc", "Polygon", "Segment", "box_faces", "look_at", "render"]

_NEAR = 0.02
_LIGHT = np.array([0.3, -0.2, 0.93]) / np.linalg.norm([0.3, -0.2, 0.93])


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: `rotation` maps world vectors to camera axes (x right, y down, z forward)."""

    position: np.ndarray
    rotation: np.ndarray
    width: int
    height: int
    fov_deg: float = 75.0

    @property
    def focal(self) -> float:
        return 0.5 * self.width / np.tan(np.radians(self.fov_deg) / 2)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - self.position) @ self.rotation.T

    def to_pixels(self, cam_points: np.ndarray) -> np.ndarray:
        f = self.focal
        z = cam_points[:, 2:3]
        return cam_points[:, :2] * f / z + np.array([self.width / 2, self.height / 2])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """World-to-camera rotation for a camera at `eye` looking at `target` (world z is up by default)."""
    up = np.array([0.0, 0.0, 1.0]) if up is None else up
    forward = np.asarray(target, float) - np.asarray(eye, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-6:  # looking straight along `up`: any right vector will do
        right = np.cross(forward, np.array([1.0, 0.0, 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


@dataclass(frozen=True)
class Polygon:
    points: np.ndarray  # (N, 3) world
    color: tuple[int, int, int]
    layer: int = 1  # lower layers are drawn first; within a layer, far to near
    tag: str = ""  # lets a camera leave out the parts it is mounted on


@dataclass(frozen=True)
class Segment:
    start: np.ndarray
    end: np.ndarray
    radius: float
    color: tuple[int, int, int]
    layer: int = 1
    tag: str = ""


@dataclass(frozen=True)
class Disc:
    center: np.ndarray
    radius: float
    color: tuple[int, int, int]
    layer: int = 1
    tag: str = ""


def _shade(color: tuple[int, int, int], normal: np.ndarray) -> tuple[int, int, int]:
    k = 0.55 + 0.45 * max(0.0, float(normal @ _LIGHT))
    return (int(color[0] * k), int(color[1] * k), int(color[2] * k))


def box_faces(
    center: np.ndarray, size: np.ndarray, yaw: float, color: tuple[int, int, int], layer: int = 1
) -> list[Polygon]:
    """The six faces of a box turned by `yaw`, each shaded by its normal (back faces get culled later)."""
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    half = np.asarray(size, float) / 2
    faces = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            n = np.zeros(3)
            n[axis] = sign
            u, v = np.eye(3)[(axis + 1) % 3], np.eye(3)[(axis + 2) % 3]
            corners = [n * half + (a * u + b * v) * half for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
            pts = np.asarray(corners) @ rot.T + center
            faces.append(Polygon(pts, _shade(color, rot @ n), layer))
    return faces


def _clip_near(cam_pts: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clipping of a polygon (camera coordinates) against the near plane."""
    out = []
    n = len(cam_pts)
    for i in range(n):
        a, b = cam_pts[i], cam_pts[(i + 1) % n]
        a_in, b_in = a[2] >= _NEAR, b[2] >= _NEAR
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (_NEAR - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.asarray(out)


def _facing(cam: Camera, poly: Polygon) -> bool:
    if len(poly.points) < 3:
        return True
    normal = np.cross(poly.points[1] - poly.points[0], poly.points[2] - poly.points[0])
    return float(normal @ (cam.position - poly.points[0])) > 0


def render(cam: Camera, primitives: list, background: tuple[int, int, int] = (200, 196, 184)) -> np.ndarray:
    """Draw `primitives` far to near (layer 0 first) and return an (H, W, 3) uint8 image."""
    img = Image.new("RGB", (cam.width, cam.height), background)
    draw = ImageDraw.Draw(img)
    jobs = []
    for i, prim in enumerate(primitives):
        if isinstance(prim, Polygon):
            if not _facing(cam, prim):
                continue
            pts = _clip_near(cam.to_camera(prim.points))
            if len(pts) < 3:
                continue
            jobs.append((prim.layer, -float(pts[:, 2].mean()), i, prim, pts))
        elif isinstance(prim, Segment):
            pts = cam.to_camera(np.stack([prim.start, prim.end]))
            if (pts[:, 2] < _NEAR).any():
                continue
            jobs.append((prim.layer, -float(pts[:, 2].mean()), i, prim, pts))
        else:
            pts = cam.to_camera(prim.center[None])
            if pts[0, 2] < _NEAR:
                continue
            jobs.append((prim.layer, -float(pts[0, 2]), i, prim, pts))
    jobs.sort(key=lambda j: j[:3])
    f = cam.focal
    for _, _, _, prim, pts in jobs:
        px = cam.to_pixels(pts)
        if isinstance(prim, Polygon):
            draw.polygon([tuple(p) for p in px], fill=prim.color)
        elif isinstance(prim, Segment):
            width = max(1, round(2 * prim.radius * f / float(pts[:, 2].mean())))
            draw.line([tuple(px[0]), tuple(px[1])], fill=prim.color, width=width)
            for p, z in zip(px, pts[:, 2], strict=True):  # round caps
                r = prim.radius * f / float(z)
                draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=prim.color)
        else:
            r = prim.radius * f / float(pts[0, 2])
            p = px[0]
            draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=prim.color)
    return np.asarray(img)
