"""The order of transforms, written once (DESIGN.md §3) and used by ingest, statistics and the trainer.

native frame -> gripper to one sense (1 = closed) -> chunk actions[t : t+H] -> normalize (quantile, per
dataset) -> state prompt -> pad steps to 50 -> pad dims to 32.
"""

from __future__ import annotations

from collections.abc import Callable

from vlamix.schemas.embodiment import MAX_DIMS, MODEL_HORIZON, Embodiment
from vlamix.transforms.chunk import ChunkActions
from vlamix.transforms.gripper import GripperToClosed
from vlamix.transforms.normalize import QuantileNormalize
from vlamix.transforms.pad import PadDims, PadSteps
from vlamix.transforms.prompt import StatePrompt
from vlamix.transforms.stats import DimStats

__all__ = ["Transform", "apply", "build_chain", "stats_chain"]

Transform = Callable[[dict], dict]


def stats_chain(emb: Embodiment) -> list[Transform]:
    """Everything before normalization: statistics are taken over what these produce."""
    chain: list[Transform] = []
    if emb.gripper is not None:
        for key, dims in (("state", emb.state), ("episode_actions", emb.action)):
            idx = tuple(i for i, d in enumerate(dims) if d.kind == "gripper")
            if idx:
                chain.append(GripperToClosed(key, idx, emb.gripper.open, emb.gripper.closed))
    return chain


def build_chain(emb: Embodiment, state_stats: DimStats, action_stats: DimStats) -> list[Transform]:
    """The whole chain for one dataset. Input sample: `state` [Ds], `episode_actions` [T, Da], `frame`,
    `task`; output: padded `state`, `actions`, masks and `prompt`."""
    if any(d.delta for d in emb.action):
        raise ValueError(
            f"embodiment {emb.name}: `delta: true` action dims are not supported by this version yet"
        )
    return [
        *stats_chain(emb),
        ChunkActions(emb.chunk_horizon),
        QuantileNormalize(
            "state", tuple(state_stats.percentiles["q01"]), tuple(state_stats.percentiles["q99"])
        ),
        QuantileNormalize(
            "actions", tuple(action_stats.percentiles["q01"]), tuple(action_stats.percentiles["q99"])
        ),
        StatePrompt(emb.control_mode),
        PadSteps(MODEL_HORIZON),
        PadDims("state", "state_dim_mask", MAX_DIMS),
        PadDims("actions", "action_dim_mask", MAX_DIMS),
    ]


def apply(chain: list[Transform], sample: dict) -> dict:
    for transform in chain:
        sample = transform(sample)
    return sample
