"""Boxes for detection targets, PaliGemma's way: coordinates of the stored (resized-with-pad) image,
normalized to [0, 1] in the order y_min x_min y_max x_max, written as four `<locNNNN>` tokens on 1024 bins.
Computed after the resize-with-pad so the boxes stay on their objects; `parse_locations` inverts it."""

from __future__ import annotations

import re

import numpy as np

from vlamix.transforms.image import ResizeWithPad

__all__ = ["LOC_BINS", "box_to_padded", "location_text", "parse_locations"]

LOC_BINS = 1024
_RESIZE = ResizeWithPad()
_LOC = re.compile(r"((?:<loc\d{4}>){4})\s*([^;]*)")


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
