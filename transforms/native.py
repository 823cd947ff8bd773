"""Back from what a sample (or a model) holds to the robot's native units: the forward chain's own
inverses, in reverse order. Nothing here lists the transforms: the inverse is derived from whatever
`build_chain` built (today: unpad -> unnormalize -> absolute actions -> native gripper values).

Used by `vlamix inspect --preview` to plot a chunk, and by `vlamix predict` to turn a predicted chunk
into commands for the robot."""

from __future__ import annotations

import dataclasses

import numpy as np

from vlamix.schemas.embodiment import Embodiment
from vlamix.transforms.chain import Transform
from vlamix.transforms.chunk import ChunkActions
from vlamix.transforms.features import written
from vlamix.transforms.pad import PadDims, PadSteps

__all__ = ["inverse_chain", "native_chunk", "native_state"]

# Before the chunk the chain writes the episode's actions; a chunk holds some of the same steps, and the
# transforms before it work step by step, so their inverses act on a chunk's `actions` alike.
_BEFORE_CHUNK = {"episode_actions": "actions"}


def _inverse(transform: Transform, real: dict[str, int]) -> Transform:
    """A transform's inverse; a padding's needs the size it cuts back to: `real[field]` for dims,
    `real["steps"]` for chunk steps."""
    if isinstance(transform, PadDims):
        return transform.inverse(real[transform.key])
    if isinstance(transform, PadSteps):
        return transform.inverse(real["steps"])
    return transform.inverse()


def inverse_chain(chain: list[Transform], field: str, real: dict[str, int]) -> list[tuple[int, Transform]]:
    """The inverses of the transforms of `chain` that write `field` (`actions` or `state`), last first,
    each with the position in `chain` of the transform it undoes. Chunking is not undone: a chunk stays
    a chunk (ChunkActions' inverse keeps its first step only, for a robot that executes one)."""
    out = []
    for i in reversed(range(len(chain))):
        t = chain[i]
        if isinstance(t, ChunkActions):
            continue
        fields = written(t)
        if field in fields:
            out.append((i, _inverse(t, real)))
        elif any(_BEFORE_CHUNK.get(f) == field for f in fields):
            out.append((i, dataclasses.replace(_inverse(t, real), key=field)))
    return out


def _states(chain: list[Transform], state: np.ndarray) -> list[np.ndarray]:
    """The state as each transform of the forward chain saw it, from the native state: what the inverse
    of a transform that reads the state (absolute actions: the state the delta was taken from) needs."""
    seen, sample = [], {"state": state}
    for t in chain:
        seen.append(sample["state"])
        if "state" in written(t):
            sample = t(sample)
    return seen


def native_state(chain: list[Transform], emb: Embodiment, state: np.ndarray) -> np.ndarray:
    """A sample's padded, normalized `state` [32] -> the native state [Ds]; `chain` is the dataset's
    `build_chain`."""
    sample = {"state": np.asarray(state, np.float32)}
    for _, inverse in inverse_chain(chain, "state", {"state": emb.state_dim}):
        sample = inverse(sample)
    return sample["state"]


def native_chunk(
    chain: list[Transform],
    emb: Embodiment,
    actions: np.ndarray,
    native_state_now: np.ndarray,
    is_pad: np.ndarray | None = None,
) -> np.ndarray:
    """A padded, normalized chunk `actions` [50, 32] (or [H, Da]) -> native absolute actions [H, Da], H
    the real steps (`is_pad` False). Delta dims get the native state at the chunk's first step added
    back. `chain` is the dataset's `build_chain`."""
    actions = np.asarray(actions, np.float32)
    is_pad = np.zeros(len(actions), bool) if is_pad is None else np.asarray(is_pad, bool)
    real = {"actions": emb.action_dim, "steps": int((~is_pad).sum())}
    states = _states(chain, np.asarray(native_state_now, np.float32)[: emb.state_dim])
    sample = {"actions": actions, "action_is_pad": is_pad}
    for i, inverse in inverse_chain(chain, "actions", real):
        sample = inverse({**sample, "state": states[i]})
    return sample["actions"]
