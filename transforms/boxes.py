"""Boxes for detection targets, PaliGemma's way: coordinates of the stored (resized-with-pad) image,
normalized to [0, 1] in the order y_min x_min y_max x_max, written as four `<locNNNN>` tokens on 1024 bins.
Computed after the resize-with-pad so the boxes stay on their objects; `parse_locations` inverts it.

Points for pointing targets the same way: (y, x) in [0, 1] of the padded image as two `<locNNNN>` tokens,
several points joined by ` ; ` in order (`point_text`); `parse_points` and `padded_to_point` invert it.
A point is placed by the size the resize really produced (`fit_size` rounds each side), so it lands on
its pixel to within the rounding of the bins."""

from __future__ import annotations

import re

import numpy as np

from vlamix.transforms.image import ResizeWithPad

__all__ = [
    "LOC_BINS",
    "box_to_padded",
    "location_text",
    "padded_to_point",
    "parse_locations",
    "parse_points",
    "point_text",
    "point_to_padded",
]

LOC_BINS = 1024
_RESIZE = ResizeWithPad()
_LOC = re.compile(r"((?:<loc\d{4}>){4})\s*([^;]*)")
_POINT = re.compile(r"<loc(\d{4})><loc(\d{4})>")


def box_to_padded(
    xywh: tuple[float, float, float, float], height: int, width: int, resize: ResizeWithPad = _RESIZE
) -> tuple[float, float, float, float]:
    """A COCO box [x, y, w, h] in original pixels -> (y_min, x_min, y_max, x_max) in [0, 1] of the padded image."""
    scale, _, _, top, left = resize.geometry(height, width)
    x, y, w, h = (float(v) for v in xywh)
    coords = (
        np.array([top + y * scale, left + x * scale, top + (y + h) * scale, left + (x + w) * scale])
        / resize.size
    )
    return tuple(float(v) for v in np.clip(coords, 0.0, 1.0))  # type: ignore[return-value]


def _bin(v: float) -> int:
    return min(LOC_BINS - 1, int(v * LOC_BINS))


def location_text(boxes: list[tuple[str, tuple[float, float, float, float]]]) -> str:
    """[(label, (y_min, x_min, y_max, x_max))] -> `<loc0123><loc0045><loc0678><loc0901> cat ; ...`."""
    return " ; ".join("".join(f"<loc{_bin(v):04d}>" for v in box) + f" {label}" for label, box in boxes)


def parse_locations(text: str) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Inverse of `location_text`, to bin centres."""
    out = []
    for locs, label in _LOC.findall(text):
        bins = [int(b) for b in re.findall(r"<loc(\d{4})>", locs)]
        out.append((label.strip(), tuple((b + 0.5) / LOC_BINS for b in bins)))
    return out  # type: ignore[return-value]


def point_to_padded(
    xy: tuple[float, float], height: int, width: int, resize: ResizeWithPad = _RESIZE
) -> tuple[float, float]:
    """A point (x, y) in original pixels (continuous: pixel column 7's centre is x 7.5) -> (y, x) in [0, 1]
    of the padded image."""
    _, new_h, new_w, top, left = resize.geometry(height, width)
    x, y = (float(v) for v in xy)
    return (top + y * new_h / height) / resize.size, (left + x * new_w / width) / resize.size


def padded_to_point(
    yx: tuple[float, float], height: int, width: int, resize: ResizeWithPad = _RESIZE
) -> tuple[float, float]:
    """Inverse of `point_to_padded`: (y, x) in [0, 1] of the padded image -> (x, y) in original pixels."""
    _, new_h, new_w, top, left = resize.geometry(height, width)
    y, x = (float(v) * resize.size for v in yx)
    return (x - left) * width / new_w, (y - top) * height / new_h


def point_text(points: list[tuple[float, float]]) -> str:
    """[(y, x)] in [0, 1] -> `<loc0123><loc0456> ; <loc0789><loc0012>`, in order."""
    return " ; ".join(f"<loc{_bin(y):04d}><loc{_bin(x):04d}>" for y, x in points)


def parse_points(text: str) -> list[tuple[float, float]]:
    """Inverse of `point_text`, to bin centres."""
    return [((int(y) + 0.5) / LOC_BINS, (int(x) + 0.5) / LOC_BINS) for y, x in _POINT.findall(text)]
