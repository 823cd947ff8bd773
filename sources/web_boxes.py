"""COCO boxes onto the decoded image, by written rules:

- Boxes drawn on a declared size (COCO `images[].width/height`) other than the file's are scaled to the
  file when the two aspect ratios agree within ASPECT_TOLERANCE (a resized mirror of the images); another
  aspect ratio means the file is not the annotated picture, and the item is refused naming both sizes.
- A box past the edge by at most `edge_tolerance` of that side (the larger of EDGE_PX = 4 px and
  EDGE_FRACTION = 2% of the side) is clipped to the image (annotation tools overshoot by a pixel or two); farther out, it is refused.
- A box of zero width or height, as given or after clipping, points at nothing: it is dropped and counted.
- A negative width or height, or a coordinate that is not finite, is refused (not a COCO [x, y, w, h]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vlamix.sources.fields import FieldError

__all__ = ["ASPECT_TOLERANCE", "EDGE_FRACTION", "EDGE_PX", "FittedBoxes", "edge_tolerance", "fit_boxes"]

ASPECT_TOLERANCE = 0.01  # 1%: rounding a resized side moves the ratio by well under this
EDGE_PX = 4.0
EDGE_FRACTION = 0.02

Box = tuple[str, float, float, float, float]  # (label, x, y, w, h)


@dataclass(frozen=True)
class FittedBoxes:
    boxes: tuple[Box, ...]  # in the decoded file's pixels, inside the image, non-empty
    clipped: int
    dropped: int
    rescaled: int


def edge_tolerance(side: float) -> float:
    """How far past an edge of this side length (pixels) a box may reach and still be clipped."""
    return max(EDGE_PX, EDGE_FRACTION * side)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except (TypeError, OverflowError):  # not a number, an int too large for a float
        return False


def _scale(drawn_on: tuple[float, float] | None, width: int, height: int) -> tuple[float, float]:
    if drawn_on is None or tuple(drawn_on) == (width, height):
        return 1.0, 1.0
    sx, sy = width / drawn_on[0], height / drawn_on[1]
    if abs(sx / sy - 1.0) > ASPECT_TOLERANCE:
        raise FieldError(
            f"the annotations give the image as {drawn_on[0]:g}x{drawn_on[1]:g}, the file decodes to "
            f"{width}x{height}: another aspect ratio, so not a resized copy of the annotated image; fix "
            "`width`/`height` in the COCO `images` list or replace the file"
        )
    return sx, sy


def fit_boxes(
    boxes: tuple[Box, ...], drawn_on: tuple[float, float] | None, width: int, height: int
) -> FittedBoxes:
    """`boxes` (drawn on `drawn_on`, or on the file itself when None) in the pixels of the decoded
    `width` x `height` image. Raises FieldError naming the first box that breaks a rule."""
    sx, sy = _scale(drawn_on, width, height)
    fw, fh = drawn_on if sx != 1.0 or sy != 1.0 else (width, height)  # type: ignore[misc]
    tx, ty = edge_tolerance(fw), edge_tolerance(fh)
    out, clipped, dropped = [], 0, 0
    for label, x, y, w, h in boxes:
        given = [x, y, w, h]
        if not all(_finite(v) for v in given):  # NaN passes every comparison below
            raise FieldError(f"box {given} of {label!r} has a coordinate that is not finite")
        if w < 0 or h < 0:
            raise FieldError(
                f"box {given} of {label!r} has a negative width or height: COCO boxes are [x, y, width, "
                "height] (is this [x_min, y_min, x_max, y_max]?)"
            )
        if x < -tx or y < -ty or x + w > fw + tx or y + h > fh + ty:
            raise FieldError(
                f"box {given} of {label!r} lies outside the {fw:g}x{fh:g} image by more than the "
                f"{tx:g} px across and {ty:g} px down that a box may overshoot (the larger of 4 px and 2% of the "
                "side): fix or drop that annotation"
            )
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, fw), min(y + h, fh)
        if x1 <= x0 or y1 <= y0:
            dropped += 1
            continue
        clipped += (x0, y0, x1, y1) != (x, y, x + w, y + h)
        out.append((label, x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy))
    rescaled = len(out) if (sx, sy) != (1.0, 1.0) else 0
    return FittedBoxes(tuple(out), clipped, dropped, rescaled)
