"""Exact statistics in LeRobot's `stats.json` shape: mean, std, min, max, count and the quantiles LeRobot
writes (q01, q10, q50, q90, q99), per episode (for `meta/episodes/`) and per dataset (`meta/stats.json`).

- Vectors (`observation.state`, `action`): per episode with numpy (one episode is in memory anyway); per
  dataset with the layout's own two-pass exact merge (`transforms/stats_merge.py`), so memory does not grow
  with the dataset and the quantiles are numpy's linear ones bit for bit. LeRobot estimates its quantiles
  from 5,000-bin histograms; these are exact.
- Images: per channel over every pixel of every exported frame, scaled to [0, 1] as LeRobot scales them,
  shape (3, 1, 1). Pixels are uint8, so a 256-bin count per channel is exact and adds up across episodes:
  the dataset's image statistics are the sum of its episodes' counts, quantiles included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from vlamix.transforms.stats_merge import FirstMerge, FirstPass, Plan, SecondMerge, SecondPass, finish

__all__ = [
    "QUANTILES",
    "dataset_vector_stats",
    "image_counts",
    "image_stats",
    "vector_stats",
]

QUANTILES = (1, 10, 50, 90, 99)  # LeRobot's DEFAULT_QUANTILES, as integer percents


def _q(p: int) -> str:
    return f"q{p:02d}"


def vector_stats(values: np.ndarray) -> dict[str, list]:
    """Statistics of one episode's `[T, D]` values (float32), exact (numpy's linear quantiles)."""
    x = np.asarray(values, np.float64)
    out = {
        "min": x.min(0).tolist(),
        "max": x.max(0).tolist(),
        "mean": x.mean(0).tolist(),
        "std": x.std(0).tolist(),
        "count": [len(x)],
    }
    q = np.percentile(x, QUANTILES, axis=0)
    return out | {_q(p): q[i].tolist() for i, p in enumerate(QUANTILES)}


def dataset_vector_stats(parts: Callable[[], Iterable[np.ndarray]], dims: int) -> dict[str, list]:
    """Statistics over every row of the float32 arrays `parts()` yields (called twice: one pass each),
    merged in the order yielded; values are rounded to float32 as the layout's statistics are."""
    first = FirstMerge(dims)
    for v in parts():
        first.add(FirstPass.of(np.ascontiguousarray(v, np.float32)))
    plan = Plan.of(first, QUANTILES)
    second = SecondMerge(plan)
    for v in parts():
        second.add(SecondPass.of(np.ascontiguousarray(v, np.float32), plan))
    s = finish(plan, second)
    return {"min": s.min, "max": s.max, "mean": s.mean, "std": s.std, "count": [s.count]} | {
        _q(p): s.percentiles[_q(p)] for p in QUANTILES
    }


def image_counts(frames: Iterable[np.ndarray]) -> np.ndarray:
    """`[3, 256]` counts of each channel's pixel values over `frames` (each `[H, W, 3]` uint8)."""
    counts = np.zeros(3 * 256, np.int64)
    offsets = np.array([0, 256, 512], np.uint16)
    for f in frames:
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(f"image statistics take [H, W, 3] uint8 frames, got {f.dtype} {f.shape}")
        counts += np.bincount((f.reshape(-1, 3) + offsets).ravel(), minlength=3 * 256)  # one pass, 3 channels
    return counts.reshape(3, 256)


def _channel(counts: np.ndarray) -> dict[str, float]:
    values = np.arange(256, dtype=np.float64) / 255.0
    n = int(counts.sum())
    mean = float((values * counts).sum() / n)
    std = float(np.sqrt((np.square(values - mean) * counts).sum() / n))
    nonzero = np.flatnonzero(counts)
    cum = np.cumsum(counts)
    out = {"min": float(values[nonzero[0]]), "max": float(values[nonzero[-1]]), "mean": mean, "std": std}
    for p in QUANTILES:  # numpy's linear method over the sorted pixels, read off the counts
        virtual = (n - 1) * p / 100
        lo = int(np.floor(virtual))
        hi = min(lo + 1, n - 1)
        a = values[int(np.searchsorted(cum, lo, side="right"))]
        b = values[int(np.searchsorted(cum, hi, side="right"))]
        out[_q(p)] = float(a + (b - a) * (virtual - lo))
    return out


def image_stats(counts: np.ndarray) -> dict[str, list]:
    """LeRobot's image statistics from `[3, 256]` counts: each value `(3, 1, 1)`, in [0, 1]; `count` is the
    number of frames (pixels per channel / (H * W) is not known here, so the caller passes frames)."""
    if counts.shape != (3, 256) or counts.sum() == 0:
        raise ValueError(f"image statistics need [3, 256] counts of at least one pixel, got {counts.shape}")
    per = [_channel(counts[c]) for c in range(3)]
    return {k: [[[per[c][k]]] for c in range(3)] for k in per[0]}
