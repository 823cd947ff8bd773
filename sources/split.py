"""Seeded, stable episode splits for sources that have none of their own (docs/design.md §8)."""

from __future__ import annotations

import hashlib

__all__ = ["content_split"]


def content_split(content_hash: str, val_fraction: float, seed: int = 0) -> str:
    """'val' for about `val_fraction` of episodes, chosen by a seeded hash of the episode's content: the
    same episode lands in the same split in every run, whatever else the dataset holds."""
    h = hashlib.blake2b(f"{seed}:{content_hash}".encode(), digest_size=8).digest()
    return "val" if int.from_bytes(h, "big") / 2**64 < val_fraction else "train"
