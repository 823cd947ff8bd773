"""Rotation groups (schemas/rotation_group.py) in the transform chain, each with its inverse beside it.

- `TrainedRotations` / `LoggedRotations`: a part's values as the source logs them (a quaternion, a
  rotation vector, a matrix, ...) <-> the spec's trained dims (Euler xyz or rot6d), on `[..., D]` arrays.
  The extract step applies the first to every frame; `vlamix predict` the second to what it returns.
- `RelativeRotations` / `ComposeRotations`: a grouped action dim's delta is the relative rotation
  R_state^-1 R_action, written in the trained representation, and back.

Conversions go through rotation matrices (transforms/rotation_repr.py, scipy's Rotation). A quaternion
whose norm is within QUAT_TOLERANCE of 1 is normalized; beyond it (and for a matrix that is not a rotation)
the conversion raises ValueError naming the group, and the extract step quarantines the episode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from vlamix.schemas.rotation_group import GroupSpan
from vlamix.transforms import rotation_repr

__all__ = ["ComposeRotations", "LoggedRotations", "RelativeRotations", "TrainedRotations"]


def _convert(x: np.ndarray, spans: tuple[GroupSpan, ...], to_trained: bool) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out, end = [], 0
    for s in spans:
        start, width, src, dst = (
            (s.source_start, s.source_width, s.repr, s.train)
            if to_trained
            else (s.start, s.width, s.train, s.repr)
        )
        out.append(x[..., end:start])
        try:
            matrices = rotation_repr.to_matrix(x[..., start : start + width], src)
        except ValueError as e:
            where = f"dims {start}..{start + width - 1}"
            raise ValueError(f"rotation group at {where} ({src}): {e}") from None
        out.append(rotation_repr.from_matrix(matrices, dst))
        end = start + width
    out.append(x[..., end:])
    return np.concatenate(out, axis=-1)


@dataclass(frozen=True)
class TrainedRotations:
    """`key` [..., logged width] -> [..., trained width]: each group from its source representation to the
    trained one."""

    key: str
    spans: tuple[GroupSpan, ...]
    writes: ClassVar[tuple[str, ...]] = ()

    def __call__(self, sample: dict) -> dict:
        return {**sample, self.key: _convert(sample[self.key], self.spans, True).astype(np.float32)}

    def inverse(self) -> LoggedRotations:
        return LoggedRotations(self.key, self.spans)


@dataclass(frozen=True)
class LoggedRotations:
    """`key` [..., trained width] -> [..., logged width]: back to the source's representation (a model's
    rot6d output need not be orthonormal: it is made a rotation first, by Gram-Schmidt)."""

    key: str
    spans: tuple[GroupSpan, ...]
    writes: ClassVar[tuple[str, ...]] = ()

    def __call__(self, sample: dict) -> dict:
        return {**sample, self.key: _convert(sample[self.key], self.spans, False).astype(np.float32)}

    def inverse(self) -> TrainedRotations:
        return TrainedRotations(self.key, self.spans)


def _matrices(x: np.ndarray, start: int, width: int, repr_: str) -> np.ndarray:
    return rotation_repr.to_matrix(x[..., start : start + width], repr_)


@dataclass(frozen=True)
class RelativeRotations:
    """`actions` [..., H, Da]: the grouped dims [start, start + width) become R_s^-1 R_a, R_s the state's
    group at `state_start` [..., Ds] (the frame's own rotation) and R_a each step's; in `train` (euler_xyz
    or rot6d)."""

    start: int
    state_start: int
    width: int
    train: str
    writes: ClassVar[tuple[str, ...]] = ("actions",)

    def features(self, fields: dict) -> dict:
        if (
            self.start + self.width > fields["actions"][-1]
            or self.state_start + self.width > fields["state"][-1]
        ):
            raise KeyError("actions/state dims of the rotation group")
        return fields

    def __call__(self, sample: dict) -> dict:
        actions = np.array(sample["actions"], dtype=np.float64, copy=True)
        state = np.asarray(sample["state"], dtype=np.float64)
        r_state = _matrices(state, self.state_start, self.width, self.train)[..., None, :, :]
        r_action = _matrices(actions, self.start, self.width, self.train)
        delta = rotation_repr.relative(r_state, r_action)
        actions[..., self.start : self.start + self.width] = rotation_repr.from_matrix(delta, self.train)
        return {**sample, "actions": actions.astype(np.float32)}

    def inverse(self) -> ComposeRotations:
        return ComposeRotations(self.start, self.state_start, self.width, self.train)


@dataclass(frozen=True)
class ComposeRotations:
    """The inverse of RelativeRotations: R_s delta, back to absolute rotations."""

    start: int
    state_start: int
    width: int
    train: str
    writes: ClassVar[tuple[str, ...]] = ("actions",)

    def features(self, fields: dict) -> dict:
        return RelativeRotations.features(self, fields)  # type: ignore[arg-type]

    def __call__(self, sample: dict) -> dict:
        actions = np.array(sample["actions"], dtype=np.float64, copy=True)
        state = np.asarray(sample["state"], dtype=np.float64)
        r_state = _matrices(state, self.state_start, self.width, self.train)[..., None, :, :]
        delta = _matrices(actions, self.start, self.width, self.train)
        absolute = rotation_repr.compose(r_state, delta)
        actions[..., self.start : self.start + self.width] = rotation_repr.from_matrix(absolute, self.train)
        return {**sample, "actions": actions.astype(np.float32)}

    def inverse(self) -> RelativeRotations:
        return RelativeRotations(self.start, self.state_start, self.width, self.train)
