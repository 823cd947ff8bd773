"""Gripper dims to one sense (0 = open, 1 = closed), and back to the embodiment's native values."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GripperFromClosed", "GripperToClosed"]


def _remap(
    x: np.ndarray, dims: tuple[int, ...], src: tuple[float, float], dst: tuple[float, float]
) -> np.ndarray:
    out = np.array(x, dtype=np.float32, copy=True)
    if dims:
        scale = (dst[1] - dst[0]) / (src[1] - src[0])
        out[..., list(dims)] = (out[..., list(dims)] - src[0]) * scale + dst[0]
    return out


@dataclass(frozen=True)
class GripperToClosed:
    """Maps the native open value to 0 and the native closed value to 1 on `dims` of `key`."""

    key: str
    dims: tuple[int, ...]
    open: float
    closed: float

    def features(self, fields: dict) -> dict:
        fields[self.key]
        return fields

    def __call__(self, sample: dict) -> dict:
        return {**sample, self.key: _remap(sample[self.key], self.dims, (self.open, self.closed), (0.0, 1.0))}

    def inverse(self) -> GripperFromClosed:
        return GripperFromClosed(self.key, self.dims, self.open, self.closed)


@dataclass(frozen=True)
class GripperFromClosed:
    key: str
    dims: tuple[int, ...]
    open: float
    closed: float

    def features(self, fields: dict) -> dict:
        fields[self.key]
        return fields

    def __call__(self, sample: dict) -> dict:
        return {**sample, self.key: _remap(sample[self.key], self.dims, (0.0, 1.0), (self.open, self.closed))}

    def inverse(self) -> GripperToClosed:
        return GripperToClosed(self.key, self.dims, self.open, self.closed)
