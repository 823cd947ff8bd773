"""Generators seeded by what they draw and where: (seed, purpose, index) -> torch.Generator. Every random
draw of the trainer (augmentation of batch k, flow noise of step s, held-out batch j) comes from one of
these, so a resumed run, or a batch built by another worker, draws exactly the same numbers."""

from __future__ import annotations

import hashlib

import torch

__all__ = ["seeded"]


def seeded(seed: int, what: str, index: int) -> torch.Generator:
    digest = hashlib.blake2b(f"{what}/{seed}/{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "big") >> 1)
