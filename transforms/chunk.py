"""Action chunks: actions[t : t+H] of the episode, the last action repeated past its end, with a mask."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

__all__ = ["ChunkActions", "FirstAction"]


@dataclass(frozen=True)
class ChunkActions:
    """Reads `episode_actions` [T, D] and `frame` t; writes `actions` [H, D] and `action_is_pad` [H]. `frame`
    may also be an array of frames [N], giving [N, H, D] and [N, H] (how statistics see every chunk)."""

    horizon: int
    writes: ClassVar[tuple[str, ...]] = ("actions", "action_is_pad")

    def features(self, fields: dict) -> dict:
        _, dim = fields.pop("episode_actions")
        fields["frame"]
        return {**fields, "actions": (self.horizon, dim), "action_is_pad": (self.horizon,)}

    def __call__(self, sample: dict) -> dict:
        episode, t = sample["episode_actions"], np.asarray(sample["frame"])
        steps = t[..., None] + np.arange(self.horizon)
        is_pad = steps >= len(episode)
        chunk = np.asarray(episode, dtype=np.float32)[np.minimum(steps, len(episode) - 1)]
        out = {k: v for k, v in sample.items() if k != "episode_actions"}
        return {**out, "actions": chunk, "action_is_pad": is_pad}

    def inverse(self) -> FirstAction:
        return FirstAction()


@dataclass(frozen=True)
class FirstAction:
    """Back from a chunk to the action of its own frame (what the robot executes first)."""

    writes: ClassVar[tuple[str, ...]] = ("action",)

    def features(self, fields: dict) -> dict:
        _, dim = fields.pop("actions")
        fields.pop("action_is_pad", None)
        return {**fields, "action": (dim,)}

    def __call__(self, sample: dict) -> dict:
        out = {k: v for k, v in sample.items() if k not in ("actions", "action_is_pad")}
        return {**out, "action": np.asarray(sample["actions"])[0]}

    def inverse(self) -> ChunkActions:
        raise NotImplementedError("a single action cannot be re-chunked: chunking needs the whole episode")
