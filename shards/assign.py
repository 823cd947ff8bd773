"""Where each sample goes: shard and position follow from a seeded stable hash of its key, so any worker
places any sample without seeing the others, and the result is a seeded permutation that mixes episodes."""

from __future__ import annotations

import hashlib
import math

__all__ = ["place", "shard_count"]


def shard_count(samples: int, samples_per_shard: int) -> int:
    return max(1, math.ceil(samples / samples_per_shard))


def place(key: str, seed: int, shards: int) -> tuple[int, int]:
    """(shard, position) of a sample: blake2b of seed and key (never Python's `hash`)."""
    h = int.from_bytes(hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest(), "big")
    return h % shards, h
