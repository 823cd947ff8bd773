"""The order of transforms, written once (docs/design.md §3) and used by ingest, statistics and the trainer.

native frame -> gripper to one sense (1 = closed) -> chunk actions[t : t+H] -> delta a[t+h] - s[t] on the
dims the embodiment trains as deltas (Euler rotations wrapped; a rotation group's delta is R_s^-1 R_a) ->
normalize (quantile or z-score, per dataset) -> state prompt -> FAST over the real steps and dims -> pad steps to 50 -> pad dims to 32 ->
token ids and loss mask of prompt, target and FAST tokens.
"""

from __future__ import annotations

from collections.abc import Callable

from vlamix.schemas.embodiment import MAX_DIMS, MODEL_HORIZON, Embodiment
from vlamix.transforms.chunk import ChunkActions
from vlamix.transforms.delta import DeltaActions
from vlamix.transforms.gripper import GripperToClosed
from vlamix.transforms.normalize import QuantileNormalize, ZScoreNormalize
from vlamix.transforms.pad import PadDims, PadSteps
from vlamix.transforms.prompt import StatePrompt
from vlamix.transforms.rotation import WrapRotations
from vlamix.transforms.rotation_groups import RelativeRotations
from vlamix.transforms.stats import DimStats
from vlamix.transforms.tokenize import FastEncode, TokenizerSetLike, TokenizeSample

__all__ = [
    "MIN_SPAN",
    "Transform",
    "apply",
    "apply_batch",
    "build_chain",
    "normalizer",
    "observation_chain",
    "stats_chain",
]

Transform = Callable[[dict], dict]


def _closed_grippers(emb: Embodiment, keys: tuple[str, ...]) -> list[Transform]:
    chain: list[Transform] = []
    if emb.gripper is not None:
        for key, dims in (("state", emb.state), ("episode_actions", emb.action)):
            idx = tuple(i for i, d in enumerate(dims) if d.kind == "gripper")
            if idx and key in keys:
                chain.append(GripperToClosed(key, idx, emb.gripper.open, emb.gripper.closed))
    return chain


def stats_chain(emb: Embodiment) -> list[Transform]:
    """Everything before normalization: statistics are taken over exactly what these produce (chunks,
    and deltas for delta dims), by applying them to every frame of an episode at once."""
    chain = _closed_grippers(emb, ("state", "episode_actions"))
    native_deltas = tuple(
        i for i, d in enumerate(emb.action) if d.kind == "ee_rotation" and d.representation == "delta"
    )
    if native_deltas and emb.rotation == "euler":
        chain.append(WrapRotations("episode_actions", native_deltas))
    chain.append(ChunkActions(emb.chunk_horizon))
    state_index = {d.name: i for i, d in enumerate(emb.state)}
    grouped = {i for s in emb.spans("action") for i in range(s.start, s.start + s.width)}
    delta = [i for i, d in enumerate(emb.action) if d.delta and i not in grouped]
    if delta:
        wrap = tuple(i for i in delta if emb.action[i].kind == "ee_rotation" and emb.rotation == "euler")
        chain.append(DeltaActions(tuple(delta), tuple(state_index[emb.action[i].name] for i in delta), wrap))
    for span in emb.spans("action"):  # a rotation group's delta is a relative rotation, not a difference
        if emb.action[span.start].delta:
            state_start = state_index[emb.action[span.start].name]
            chain.append(RelativeRotations(span.start, state_start, span.width, span.train))
    return chain


# A dim whose q01..q99 span (or 2 std) is below this, in native units, is normalized as if its span were
# this wide around its middle: a near-constant dim (a parked base, an unused gripper) otherwise maps tiny
# jitter to huge values that no FAST vocabulary holds. Statistics files keep the true values.
MIN_SPAN = 1e-2


def normalizer(key: str, stats: DimStats, mode: str) -> Transform:
    if mode == "zscore":
        std = tuple(max(float(s), MIN_SPAN / 2) for s in stats.std)
        return ZScoreNormalize(key, tuple(stats.mean), std)
    lo, hi = [], []
    for a, b in zip(stats.percentiles["q01"], stats.percentiles["q99"], strict=True):
        a, b = float(a), float(b)
        if b - a < MIN_SPAN:
            mid = (a + b) / 2
            a, b = mid - MIN_SPAN / 2, mid + MIN_SPAN / 2
        lo.append(a)
        hi.append(b)
    return QuantileNormalize(key, tuple(lo), tuple(hi))


def build_chain(
    emb: Embodiment,
    state_stats: DimStats,
    action_stats: DimStats,
    normalization: str = "quantile",
    tokenizers: TokenizerSetLike | None = None,
) -> list[Transform]:
    """The whole chain for one dataset. Input sample: `state` [Ds], `episode_actions` [T, Da], `frame`,
    `task` (and `target` when the sample has target text); output: padded `state`, `actions`, masks and
    `prompt`, and with a tokenizer set (a loaded TokenizerSet) also `fast_ids`, `input_ids` and
    `loss_mask`."""
    return [
        *stats_chain(emb),
        normalizer("state", state_stats, normalization),
        normalizer("actions", action_stats, normalization),
        StatePrompt(emb.control_mode),
        *([FastEncode(tokenizers, emb.chunk_horizon, emb.action_dim)] if tokenizers is not None else []),
        PadSteps(MODEL_HORIZON),
        PadDims("state", "state_dim_mask", MAX_DIMS),
        PadDims("actions", "action_dim_mask", MAX_DIMS),
        *([TokenizeSample(tokenizers)] if tokenizers is not None else []),
    ]


def observation_chain(
    emb: Embodiment, state_stats: DimStats, normalization: str = "quantile"
) -> list[Transform]:
    """The state's part of `build_chain`, for inference: a native `state` [Ds] and `task` -> the
    normalized `state` and the `prompt` the samples of this embodiment carry (tested against shards)."""
    return [
        *_closed_grippers(emb, ("state",)),
        normalizer("state", state_stats, normalization),
        StatePrompt(emb.control_mode),
    ]


def apply(chain: list[Transform], sample: dict) -> dict:
    for transform in chain:
        sample = transform(sample)
    return sample


def apply_batch(chain: list[Transform], samples: list[dict]) -> list[dict]:
    """`apply` to every sample, a transform with a `batch` method (FAST encode) taking them all at once:
    the same outputs, in order, as `[apply(chain, s) for s in samples]`."""
    for transform in chain:
        batch = getattr(transform, "batch", None)
        samples = batch(samples) if batch is not None else [transform(s) for s in samples]
    return samples
