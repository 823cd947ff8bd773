"""Pointing data in a Hugging Face-style parquet: a `points` cell and a `label` or `question` cell give one
pointing turn, by written rules:

- A points cell is a non-empty list of points, each `{x, y}` (a struct with exactly those two fields) or
  `[x, y]` (two numbers), in the pixels of the image the row holds: continuous coordinates as COCO boxes
  use, x across from the left edge and y down from the top (the centre of pixel (row 3, column 7) is
  x 7.5, y 3.5). Anything else (null, an empty list, a string, three numbers, a bool, NaN) refuses the
  row naming it: a value is never coerced into a point.
- A point outside the decoded image ([0, width] x [0, height], no tolerance: a point says where the object
  is, it has no extent to clip) refuses the row's item naming the row and the point.
- The prompt is `point to {label}` (the style of `detect {labels}`), or the question itself. The target,
  written after the resize-with-pad by transforms/web_item.py, is one `<locYYYY><locXXXX>` pair per point,
  in the row's order, joined by ` ; ` (transforms/boxes.py `point_text`).
"""

from __future__ import annotations

import math

import numpy as np

from vlamix.sources.fields import FieldError, scalar_text

__all__ = ["POINT_PROMPT", "PointError", "fit_points", "point_list", "pointing_prompt"]

POINT_PROMPT = "point to {label}"

Point = tuple[float, float]  # (x, y) in the image's pixels


class PointError(FieldError):
    """A points cell that is not a list of points, or a point outside the image (quarantine field `points`)."""


def _short(value: object, limit: int = 60) -> str:
    return repr(value)[:limit]


def _coordinate(value: object, what: str) -> float:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PointError(f"{what} is {type(value).__name__} {_short(value)}, not a number")
    if not math.isfinite(value):
        raise PointError(f"{what} is {value}, not a finite number")
    return float(value)


def _point(value: object, what: str) -> Point:
    if isinstance(value, dict):
        if set(value) != {"x", "y"}:
            raise PointError(f"{what} {_short(value)} has fields {sorted(value)}, not exactly x and y")
        return _coordinate(value["x"], f"{what} x"), _coordinate(value["y"], f"{what} y")
    if isinstance(value, list | tuple | np.ndarray) and len(value) == 2:
        return _coordinate(value[0], f"{what} x"), _coordinate(value[1], f"{what} y")
    raise PointError(f"{what} is {type(value).__name__} {_short(value)}, not {{x, y}} or [x, y]")


def point_list(cell: object, what: str) -> tuple[Point, ...]:
    """The points of a cell, in order. Raises FieldError naming the first value that is not a point."""
    if cell is None:
        raise PointError(f"{what} is null: a pointing turn needs at least one point")
    if not isinstance(cell, list | tuple | np.ndarray):
        raise PointError(
            f"{what} is {type(cell).__name__} {_short(cell)}, not a list of {{x, y}} or [x, y] points"
        )
    if len(cell) == 0:
        raise PointError(f"{what} is empty: a pointing turn needs at least one point")
    return tuple(_point(v, f"{what}[{k}]") for k, v in enumerate(cell))


def pointing_prompt(column: str, value: object, what: str) -> str:
    """The prompt from a `label` cell (`point to {label}`) or a `question` cell (as it is). Raises
    FieldError where the cell holds no text."""
    text = scalar_text(value, what)
    if text is None:
        raise FieldError(f"{what} is empty: a pointing turn needs the text that says what to point at")
    return POINT_PROMPT.format(label=text) if column == "label" else text


def fit_points(points: tuple[Point, ...], width: int, height: int, where: str) -> tuple[Point, ...]:
    """`points` checked against the decoded `width` x `height` image. Raises FieldError naming `where`
    (the row) and the first point outside it."""
    for k, (x, y) in enumerate(points):
        if not (0.0 <= x <= width and 0.0 <= y <= height):
            raise PointError(
                f"{where} points[{k}] (x {x:g}, y {y:g}) lies outside the {width}x{height} image: points "
                "are in the pixels of the image the row holds; fix or drop that row"
            )
    return points
