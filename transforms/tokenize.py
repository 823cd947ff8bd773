"""Token transforms: FAST encode / decode of the normalized chunk, and the sample's token sequence with
its loss mask, all against one tokenizer set that the transforms hold (loaded once by their caller).

The set is vlamix.tokenizers.tokenizer_set.TokenizerSet; transforms sit below tokenizers, so they name
only what they use of it (`TokenizerSetLike`) and never import it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

__all__ = ["FastDecode", "FastEncode", "TokenizeSample", "TokenizerSetLike"]


class TokenizerSetLike(Protocol):
    """What the token transforms use of a tokenizer set (TokenizerSet has it)."""

    def encode_actions(self, chunk: np.ndarray, name: str) -> list[int]: ...

    def encode_actions_batch(self, chunks: np.ndarray, names: list[str]) -> list[list[int]]: ...

    def decode_actions(self, ids: list[int], horizon: int, dim: int) -> tuple[np.ndarray, bool]: ...

    def encode_sample(
        self, prompt: str, target: str | None, fast: list[int] | None
    ) -> tuple[list[int], list[bool]]: ...


@dataclass(frozen=True)
class FastEncode:
    """`actions` [>= H, >= D] (normalized) -> `fast_ids`: set ids of the first H steps and D dims, the
    embodiment's real ones. Coefficients outside the fitted range raise FastRangeError with the key."""

    tokset: TokenizerSetLike
    horizon: int
    dim: int
    writes: ClassVar[tuple[str, ...]] = ("fast_ids",)

    def features(self, fields: dict) -> dict:
        fields["actions"]
        return {**fields, "fast_ids": ("n",)}

    def __call__(self, sample: dict) -> dict:
        chunk = np.asarray(sample["actions"])[: self.horizon, : self.dim]
        return {**sample, "fast_ids": self.tokset.encode_actions(chunk, sample.get("key", "sample"))}

    def batch(self, samples: list[dict]) -> list[dict]:
        """`self(s)` of every sample, encoded in one batch (transforms/chain.py apply_batch)."""
        if not samples:
            return []
        chunks = np.stack([np.asarray(s["actions"])[: self.horizon, : self.dim] for s in samples])
        names = [s.get("key", "sample") for s in samples]
        ids = self.tokset.encode_actions_batch(chunks, names)
        return [{**s, "fast_ids": i} for s, i in zip(samples, ids, strict=True)]

    def inverse(self) -> FastDecode:
        return FastDecode(self.tokset, self.horizon, self.dim)


@dataclass(frozen=True)
class FastDecode:
    """`fast_ids` -> `actions` [H, D] (normalized) and `fast_valid`; an invalid sequence gives NaN actions."""

    tokset: TokenizerSetLike
    horizon: int
    dim: int
    writes: ClassVar[tuple[str, ...]] = ("actions", "fast_valid")

    def features(self, fields: dict) -> dict:
        fields.pop("fast_ids")
        return {**fields, "actions": (self.horizon, self.dim), "fast_valid": ()}

    def __call__(self, sample: dict) -> dict:
        actions, valid = self.tokset.decode_actions(sample["fast_ids"], self.horizon, self.dim)
        return {**sample, "actions": actions.astype(np.float32), "fast_valid": valid}

    def inverse(self) -> FastEncode:
        return FastEncode(self.tokset, self.horizon, self.dim)


@dataclass(frozen=True)
class TokenizeSample:
    """`prompt`, `target` (or none) and `fast_ids` (or none) -> `input_ids` and `loss_mask` (True on every
    token the model must produce). No inverse: text is kept beside the ids."""

    tokset: TokenizerSetLike
    writes: ClassVar[tuple[str, ...]] = ("input_ids", "loss_mask")

    def features(self, fields: dict) -> dict:
        fields["prompt"]
        return {**fields, "input_ids": ("n",), "loss_mask": ("n",)}

    def __call__(self, sample: dict) -> dict:
        ids, mask = self.tokset.encode_sample(sample["prompt"], sample.get("target"), sample.get("fast_ids"))
        return {**sample, "input_ids": ids, "loss_mask": mask}
