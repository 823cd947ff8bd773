"""The numbers of a robot sample, as the model sees them and in the robot's native units: the normalized
state and first step of the action chunk (real dims of the shard's padded arrays), the same back in
native units through the chain's own inverses (transforms/native.py), and the FAST reconstruction of
that first step (the sample's FAST ids decoded, then the same inverses). What `inspect --preview` does
for a few samples, for every sample of an episode."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlamix.schemas.embodiment import MAX_DIMS, MODEL_HORIZON, Embodiment
from vlamix.shards.assets import embodiment_of, tokenizer_dir
from vlamix.tokenizers.tokenizer_set import load_tokenizer_set
from vlamix.transforms.chain import Transform, build_chain
from vlamix.transforms.native import native_chunk, native_state
from vlamix.transforms.stats import DimStats
from vlamix.transforms.tokenize import FastDecode
from vlamix.viewer.layout_reader import ViewError, ViewLayout, read_npy

__all__ = ["DatasetUnits", "SampleValues"]


@dataclass(frozen=True)
class SampleValues:
    """One robot sample's numbers, each [D] over the embodiment's real dims."""

    state: np.ndarray  # normalized, as in the shard
    state_native: np.ndarray
    action: np.ndarray  # the chunk's first step, normalized, as in the shard
    action_native: np.ndarray  # the same in native units
    action_fast: np.ndarray  # the FAST reconstruction of that first step, native units; NaN if it is invalid


def _shaped(array: np.ndarray | None, shape: tuple[int, ...], name: str, where: str) -> np.ndarray:
    if array is None:
        raise ViewError(
            f"{where}: the sample has no {name}; a robot sample needs one (is the shard damaged?)"
        )
    if array.shape != shape or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ViewError(
            f"{where}: {name} is {array.dtype}{list(array.shape)}, a robot sample's is {list(shape)}"
        )
    return array


@dataclass(frozen=True)
class DatasetUnits:
    """What turning one dataset's samples into `SampleValues` needs: its embodiment, chain and FAST."""

    emb: Embodiment
    chain: list[Transform]
    fast: FastDecode

    @classmethod
    def load(cls, layout: ViewLayout, dataset: str) -> DatasetUnits | None:
        """The dataset's units; None for web data (no state, no actions)."""
        entry = layout.entry(dataset)
        if entry["kind"] == "WD":
            return None
        emb = embodiment_of(layout.store, entry)
        if emb is None or not isinstance(entry.get("stats"), dict):
            raise ViewError(
                f"{layout.store.url_of('manifest.json')}: robot dataset {dataset!r} names no embodiment spec or "
                "statistics, so its samples cannot be turned back into native units; re-run the ingest"
            )
        stats = layout.store.read_json(entry["stats"]["path"])
        try:
            state, actions = DimStats.from_json(stats["state"]), DimStats.from_json(stats["actions"])
        except (KeyError, TypeError, ValueError) as e:
            raise ViewError(
                f"{layout.store.url_of(entry['stats']['path'])}: not a statistics file ({e})"
            ) from e
        chain = build_chain(emb, state, actions, stats.get("normalization", "quantile"))
        tokset = load_tokenizer_set(tokenizer_dir(layout.store, layout.manifest))
        return cls(emb, chain, FastDecode(tokset, emb.chunk_horizon, emb.action_dim))

    def values(self, sample: dict[str, bytes], where: str) -> SampleValues:
        """The numbers of one sample (`where` names it in errors: shard and key)."""
        ds, da = self.emb.state_dim, self.emb.action_dim
        state = _shaped(read_npy(sample, "state.npy", where), (MAX_DIMS,), "state.npy", where)
        actions = _shaped(
            read_npy(sample, "actions.npy", where), (MODEL_HORIZON, MAX_DIMS), "actions.npy", where
        )
        is_pad = read_npy(sample, "action_is_pad.npy", where)
        if is_pad is not None:
            is_pad = _shaped(is_pad, (MODEL_HORIZON,), "action_is_pad.npy", where).astype(bool)
        state_native = native_state(self.chain, self.emb, state)
        chunk = native_chunk(self.chain, self.emb, actions, state_native, is_pad)
        fast = np.full(da, np.nan, np.float32)
        ids = read_npy(sample, "fast_ids.npy", where)
        if ids is not None:
            if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
                raise ViewError(
                    f"{where}: fast_ids.npy is {ids.dtype}{list(ids.shape)}, not a list of token ids"
                )
            decoded = self.fast({"fast_ids": ids})
            if decoded["fast_valid"]:
                fast = native_chunk(self.chain, self.emb, decoded["actions"], state_native)[0]
        return SampleValues(
            state=state[:ds].astype(np.float32),
            state_native=np.asarray(state_native, np.float32),
            action=actions[0, :da].astype(np.float32),
            action_native=np.asarray(chunk[0], np.float32),
            action_fast=np.asarray(fast, np.float32),
        )
