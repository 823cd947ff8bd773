"""Back from what a sample (or a model) holds to the robot's native units: the chain's inverses, composed
in reverse order (unpad -> unnormalize -> absolute actions -> native gripper values).

Used by `vlamix inspect --preview` to plot a chunk, and by `vlamix predict` to turn a predicted chunk
into commands for the robot."""

from __future__ import annotations

import numpy as np

from vlamix.schemas.embodiment import Embodiment
from vlamix.transforms.chain import apply, normalizer
from vlamix.transforms.delta import AbsoluteActions
from vlamix.transforms.gripper import GripperFromClosed, GripperToClosed
from vlamix.transforms.stats import DimStats

__all__ = ["native_chunk", "native_state"]


def _gripper(emb: Embodiment, key: str, dims, closed_to_native: bool):
    if emb.gripper is None:
        return []
    idx = tuple(i for i, d in enumerate(dims) if d.kind == "gripper")
    if not idx:
        return []
    cls = GripperFromClosed if closed_to_native else GripperToClosed
    return [cls(key, idx, emb.gripper.open, emb.gripper.closed)]


def native_state(emb: Embodiment, state_stats: DimStats, normalization: str, state: np.ndarray) -> np.ndarray:
    """A sample's padded, normalized `state` [32] -> the native state [Ds]."""
    chain = [
        normalizer("state", state_stats, normalization).inverse(),
        *_gripper(emb, "state", emb.state, closed_to_native=True),
    ]
    return apply(chain, {"state": np.asarray(state, np.float32)[: emb.state_dim]})["state"]


def native_chunk(
    emb: Embodiment,
    action_stats: DimStats,
    normalization: str,
    actions: np.ndarray,
    native_state_now: np.ndarray,
    is_pad: np.ndarray | None = None,
) -> np.ndarray:
    """A padded, normalized chunk `actions` [50, 32] -> native absolute actions [H, Da], H the real
    steps (`is_pad` False). Delta dims get the native state at the chunk's first step added back."""
    real = actions.shape[0] if is_pad is None else int((~np.asarray(is_pad, bool)).sum())
    delta = [i for i, d in enumerate(emb.action) if d.delta]
    state_index = {d.name: i for i, d in enumerate(emb.state)}
    wrap = tuple(i for i in delta if emb.action[i].kind == "ee_rotation" and emb.rotation == "euler")
    chain = [
        normalizer("actions", action_stats, normalization).inverse(),
        *_gripper(emb, "state", emb.state, closed_to_native=False),  # deltas were taken in the closed sense
        *(
            [AbsoluteActions(tuple(delta), tuple(state_index[emb.action[i].name] for i in delta), wrap)]
            if delta
            else []
        ),
        *_gripper(emb, "actions", emb.action, closed_to_native=True),
    ]
    sample = {
        "actions": np.asarray(actions, np.float32)[:real, : emb.action_dim],
        "state": np.asarray(native_state_now, np.float32)[: emb.state_dim],
    }
    return apply(chain, sample)["actions"]
