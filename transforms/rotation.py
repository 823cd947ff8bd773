"""Rotations in the embodiment's declared representation: Euler-angle deltas wrapped to [-pi, pi]
(a logger that writes 6.2 rad for a -0.08 rad turn is not rare)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["UnwrapNothing", "WrapRotations"]


@dataclass(frozen=True)
class WrapRotations:
    """Wraps `dims` of `key` to [-pi, pi]. Its inverse is the identity: a wrapped angle is the same rotation."""

    key: str
    dims: tuple[int, ...]

    def features(self, fields: dict) -> dict:
        fields[self.key]
        return fields

    def __call__(self, sample: dict) -> dict:
        x = np.array(sample[self.key], dtype=np.float64, copy=True)
        x[..., list(self.dims)] = np.angle(np.exp(1j * x[..., list(self.dims)]))
        return {**sample, self.key: x.astype(np.float32)}

    def inverse(self) -> UnwrapNothing:
        return UnwrapNothing(self.key)


@dataclass(frozen=True)
class UnwrapNothing:
    """The inverse of a wrap: the wrapped angles already are the native rotations (modulo 2 pi)."""

    key: str

    def features(self, fields: dict) -> dict:
        return fields

    def __call__(self, sample: dict) -> dict:
        return sample

    def inverse(self) -> UnwrapNothing:
        return self
