"""Which frames of an episode become samples: idle frames out (as DROID's loaders drop them), then a stride."""

from __future__ import annotations

import numpy as np

__all__ = ["select_frames"]


def select_frames(actions: np.ndarray, stride: int = 1, idle_threshold: float | None = None) -> np.ndarray:
    """Indices of the frames to keep. A frame is idle when no action dim moves by `idle_threshold` or
    more from the frame before (the first frame compares with the second); the stride then keeps every
    `stride`-th of the frames left."""
    n = len(actions)
    keep = np.arange(n)
    if idle_threshold is not None and n > 1:
        a = np.asarray(actions, dtype=np.float64)
        step = np.abs(np.diff(a, axis=0)).max(axis=1)
        moves = np.concatenate([step[:1], step]) >= idle_threshold
        keep = keep[moves]
    return keep[::stride]
