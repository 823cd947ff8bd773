"""Padding to the canonical layout: dims to 32 (zeros after the real ones) and chunk steps to the model
horizon (50), with masks; and the inverses that cut them back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

__all__ = ["PadDims", "PadSteps", "UnpadDims", "UnpadSteps"]


@dataclass(frozen=True)
class PadDims:
    """Zero-pads the last axis of `key` to `width` and writes `{mask_key}` (True on real dims)."""

    key: str
    mask_key: str
    width: int

    @property
    def writes(self) -> tuple[str, ...]:
        return (self.key, self.mask_key)

    def features(self, fields: dict) -> dict:
        shape = fields[self.key]
        if shape[-1] > self.width:
            raise ValueError(f"{self.key} has {shape[-1]} dims, more than the canonical {self.width}")
        return {**fields, self.key: (*shape[:-1], self.width), self.mask_key: (self.width,)}

    def __call__(self, sample: dict) -> dict:
        x = np.asarray(sample[self.key], dtype=np.float32)
        real = x.shape[-1]
        if real > self.width:
            raise ValueError(f"{self.key} has {real} dims, more than the canonical {self.width}")
        out = np.zeros((*x.shape[:-1], self.width), dtype=np.float32)
        out[..., :real] = x
        return {**sample, self.key: out, self.mask_key: np.arange(self.width) < real}

    def inverse(self, real: int) -> UnpadDims:
        return UnpadDims(self.key, self.mask_key, real)


@dataclass(frozen=True)
class UnpadDims:
    key: str
    mask_key: str
    real: int

    @property
    def writes(self) -> tuple[str, ...]:
        return (self.key, self.mask_key)

    def features(self, fields: dict) -> dict:
        fields.pop(self.mask_key, None)
        return {**fields, self.key: (*fields[self.key][:-1], self.real)}

    def __call__(self, sample: dict) -> dict:
        out = {k: v for k, v in sample.items() if k != self.mask_key}
        return {**out, self.key: np.asarray(sample[self.key])[..., : self.real]}


@dataclass(frozen=True)
class PadSteps:
    """Pads `actions` [H, D] to `horizon` steps by repeating the last one and marks them in `action_is_pad`."""

    horizon: int
    writes: ClassVar[tuple[str, ...]] = ("actions", "action_is_pad")

    def features(self, fields: dict) -> dict:
        horizon, dim = fields["actions"]
        if isinstance(horizon, int) and horizon > self.horizon:
            raise ValueError(f"chunk of {horizon} steps exceeds the model horizon {self.horizon}")
        return {**fields, "actions": (self.horizon, dim), "action_is_pad": (self.horizon,)}

    def __call__(self, sample: dict) -> dict:
        x, is_pad = np.asarray(sample["actions"], dtype=np.float32), np.asarray(sample["action_is_pad"])
        h = len(x)
        if h > self.horizon:
            raise ValueError(f"chunk of {h} steps exceeds the model horizon {self.horizon}")
        idx = np.minimum(np.arange(self.horizon), h - 1)
        pad = np.concatenate([is_pad, np.ones(self.horizon - h, dtype=bool)])
        return {**sample, "actions": x[idx], "action_is_pad": pad}

    def inverse(self, real: int) -> UnpadSteps:
        return UnpadSteps(real)


@dataclass(frozen=True)
class UnpadSteps:
    real: int
    writes: ClassVar[tuple[str, ...]] = ("actions", "action_is_pad")

    def features(self, fields: dict) -> dict:
        _, dim = fields["actions"]
        return {**fields, "actions": (self.real, dim), "action_is_pad": (self.real,)}

    def __call__(self, sample: dict) -> dict:
        return {
            **sample,
            "actions": np.asarray(sample["actions"])[: self.real],
            "action_is_pad": np.asarray(sample["action_is_pad"])[: self.real],
        }
