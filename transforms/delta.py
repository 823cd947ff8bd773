"""Delta actions (openpi's DeltaActions, without editing its input): a[t+h] - s[t] on the dims the
embodiment trains as deltas, rotations wrapped to [-pi, pi]; and the inverse back to absolute targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

__all__ = ["AbsoluteActions", "DeltaActions"]


def _wrap(x: np.ndarray) -> np.ndarray:
    return np.angle(np.exp(1j * x))


@dataclass(frozen=True)
class DeltaActions:
    """`actions` [..., H, Da] minus `state` [..., Ds]: action dim dims[i] minus state dim state_dims[i];
    dims listed in `wrap` (rotations) are wrapped to [-pi, pi]."""

    dims: tuple[int, ...]
    state_dims: tuple[int, ...]
    wrap: tuple[int, ...] = ()
    writes: ClassVar[tuple[str, ...]] = ("actions",)

    def features(self, fields: dict) -> dict:
        if max(self.dims) >= fields["actions"][-1] or max(self.state_dims) >= fields["state"][-1]:
            raise KeyError("actions/state dims of the delta")
        return fields

    def __call__(self, sample: dict) -> dict:
        actions = np.array(sample["actions"], dtype=np.float64, copy=True)
        state = np.asarray(sample["state"], dtype=np.float64)
        actions[..., list(self.dims)] -= state[..., None, list(self.state_dims)]
        if self.wrap:
            actions[..., list(self.wrap)] = _wrap(actions[..., list(self.wrap)])
        return {**sample, "actions": actions.astype(np.float32)}

    def inverse(self) -> AbsoluteActions:
        return AbsoluteActions(self.dims, self.state_dims, self.wrap)


@dataclass(frozen=True)
class AbsoluteActions:
    """Adds the state back (rotations come back wrapped to [-pi, pi], equal to the native ones modulo 2 pi)."""

    dims: tuple[int, ...]
    state_dims: tuple[int, ...]
    wrap: tuple[int, ...] = ()
    writes: ClassVar[tuple[str, ...]] = ("actions",)

    def features(self, fields: dict) -> dict:
        if max(self.dims) >= fields["actions"][-1] or max(self.state_dims) >= fields["state"][-1]:
            raise KeyError("actions/state dims of the delta")
        return fields

    def __call__(self, sample: dict) -> dict:
        actions = np.array(sample["actions"], dtype=np.float64, copy=True)
        state = np.asarray(sample["state"], dtype=np.float64)
        actions[..., list(self.dims)] += state[..., None, list(self.state_dims)]
        if self.wrap:
            actions[..., list(self.wrap)] = _wrap(actions[..., list(self.wrap)])
        return {**sample, "actions": actions.astype(np.float32)}

    def inverse(self) -> DeltaActions:
        return DeltaActions(self.dims, self.state_dims, self.wrap)
