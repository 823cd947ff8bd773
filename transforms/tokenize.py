"""Token transforms: FAST encode / decode of the normalized chunk, and the sample's token sequence with
its loss mask, all against one tokenizer set (a folder, loaded once per process)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlamix.tokenizers.fast import FastRangeError
from vlamix.tokenizers.tokenizer_set import load_tokenizer_set

__all__ = ["FastDecode", "FastEncode", "TokenizeSample"]


@dataclass(frozen=True)
class FastEncode:
    """`actions` [>= H, >= D] (normalized) -> `fast_ids`: set ids of the first H steps and D dims, the
    embodiment's real ones. Coefficients outside the fitted range raise FastRangeError with the key."""

    tokenizers: str
    horizon: int
    dim: int

    def features(self, fields: dict) -> dict:
        fields["actions"]
        return {**fields, "fast_ids": ("n",)}

    def __call__(self, sample: dict) -> dict:
        tok = load_tokenizer_set(self.tokenizers)
        chunk = np.asarray(sample["actions"])[: self.horizon, : self.dim]
        try:
            (local,) = tok.fast.encode(chunk[None])
        except FastRangeError as e:
            raise FastRangeError(f"{sample.get('key', 'sample')}: {e}") from e
        return {**sample, "fast_ids": tok.fast_ids(local)}

    def inverse(self) -> FastDecode:
        return FastDecode(self.tokenizers, self.horizon, self.dim)


@dataclass(frozen=True)
class FastDecode:
    """`fast_ids` -> `actions` [H, D] (normalized) and `fast_valid`; an invalid sequence gives NaN actions."""

    tokenizers: str
    horizon: int
    dim: int

    def features(self, fields: dict) -> dict:
        fields.pop("fast_ids")
        return {**fields, "actions": (self.horizon, self.dim), "fast_valid": ()}

    def __call__(self, sample: dict) -> dict:
        tok = load_tokenizer_set(self.tokenizers)
        start = tok.ranges["fast"][0]
        actions, valid = tok.fast.decode(
            [[int(i) - start for i in sample["fast_ids"]]], self.horizon, self.dim
        )
        return {**sample, "actions": actions[0].astype(np.float32), "fast_valid": bool(valid[0])}

    def inverse(self) -> FastEncode:
        return FastEncode(self.tokenizers, self.horizon, self.dim)


@dataclass(frozen=True)
class TokenizeSample:
    """`prompt`, `target` (or none) and `fast_ids` (or none) -> `input_ids` and `loss_mask` (True on every
    token the model must produce). No inverse: text is kept beside the ids."""

    tokenizers: str

    def features(self, fields: dict) -> dict:
        fields["prompt"]
        return {**fields, "input_ids": ("n",), "loss_mask": ("n",)}

    def __call__(self, sample: dict) -> dict:
        tok = load_tokenizer_set(self.tokenizers)
        ids, mask = tok.encode_sample(sample["prompt"], sample.get("target"), sample.get("fast_ids"))
        return {**sample, "input_ids": ids, "loss_mask": mask}
