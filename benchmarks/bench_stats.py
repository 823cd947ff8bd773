"""Statistics: time and peak memory of our exact per-dataset statistics (transforms/stats.py) over 1M
generated frames of 14 dims, against a running 5000-bin histogram like openpi's `RunningStats` fed in
batches, and the largest quantile error of each against exact quantiles."""

from __future__ import annotations

import numpy as np

from benchmarks.common import Result, best_times, peak_python_bytes
from vlamix.transforms.stats import PERCENTILES, compute_stats

FRAMES, DIMS, BATCH, BINS = 1_000_000, 14, 10_000, 5000


class RunningHistogram:
    """openpi-style running statistics: mean/std from running sums, quantiles from a 5000-bin histogram
    per dim whose edges are re-laid over the grown range when a batch falls outside it."""

    def __init__(self, dims: int, bins: int = BINS):
        self.n, self.bins = 0, bins
        self.sum, self.sumsq = np.zeros(dims), np.zeros(dims)
        self.lo, self.hi = np.full(dims, np.inf), np.full(dims, -np.inf)
        self.counts = np.zeros((dims, bins))
        self.edges: list[np.ndarray] = []

    def update(self, x: np.ndarray) -> None:
        self.n += len(x)
        self.sum += x.sum(0)
        self.sumsq += (x**2).sum(0)
        lo, hi = np.minimum(self.lo, x.min(0)), np.maximum(self.hi, x.max(0))
        if not self.edges or (lo < self.lo).any() or (hi > self.hi).any():
            self._regrid(lo, hi)
        for d in range(x.shape[1]):
            self.counts[d] += np.histogram(x[:, d], bins=self.edges[d])[0]

    def _regrid(self, lo: np.ndarray, hi: np.ndarray) -> None:
        new = [np.linspace(lo[d], hi[d], self.bins + 1) for d in range(len(lo))]
        if self.edges:  # move the old counts onto the new edges by their bin centres
            for d, old in enumerate(self.edges):
                centres = (old[:-1] + old[1:]) / 2
                self.counts[d] = np.histogram(centres, bins=new[d], weights=self.counts[d])[0]
        self.edges, self.lo, self.hi = new, lo, hi

    def quantiles(self, qs: np.ndarray) -> np.ndarray:
        out = np.empty((len(qs), len(self.edges)))
        for d, edges in enumerate(self.edges):
            cdf = np.cumsum(self.counts[d]) / self.n
            out[:, d] = edges[1:][np.minimum(np.searchsorted(cdf, qs), self.bins - 1)]
        return out


def _frames(seed: int = 0) -> np.ndarray:
    """Action-like data: smooth per-dim drifts, a gripper that sits at its two ends, heavy-ish tails."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 400 * np.pi, FRAMES)[:, None]
    x = np.sin(t * rng.uniform(0.5, 2, DIMS) + rng.uniform(0, 6, DIMS)) * rng.uniform(0.2, 2, DIMS)
    x += rng.standard_t(4, size=(FRAMES, DIMS)) * 0.05
    x[:, 6] = (x[:, 6] > 0).astype(float) + rng.normal(0, 0.01, FRAMES)
    return x.astype(np.float32)


def _histogram(x: np.ndarray) -> RunningHistogram:
    rs = RunningHistogram(x.shape[1])
    for i in range(0, len(x), BATCH):
        rs.update(x[i : i + BATCH].astype(np.float64))
    return rs


def run() -> list[Result]:
    x = _frames()
    qs = np.asarray(PERCENTILES) / 100
    exact = np.percentile(x.astype(np.float64), PERCENTILES, axis=0)
    ours = compute_stats(x)
    ours_q = np.asarray([ours.percentiles[f"q{p:02d}"] for p in PERCENTILES])
    hist_q = _histogram(x).quantiles(qs)
    span = x.max(0) - x.min(0)
    err_ours = float((np.abs(ours_q - exact) / span).max())
    err_hist = float((np.abs(hist_q - exact) / span).max())
    t_ours, t_hist = best_times([lambda: compute_stats(x), lambda: _histogram(x)], 5)
    m_ours, m_hist = peak_python_bytes(lambda: compute_stats(x)), peak_python_bytes(lambda: _histogram(x))
    data_mb = x.nbytes / 2**20
    what = f"{FRAMES:,} frames x {DIMS} dims (float32, {data_mb:.0f} MiB in memory)"
    return [
        Result(
            "stats",
            "time",
            "s",
            t_ours,
            t_hist,
            "running 5000-bin histogram (batches of 10k)",
            goal=3.0,
            lower_is_better=True,
            note=what,
        ),
        Result(
            "stats",
            "peak memory above the data",
            "MiB",
            m_ours / 2**20,
            m_hist / 2**20,
            "running 5000-bin histogram",
            lower_is_better=True,
            note="tracemalloc peak while computing (numpy buffers included)",
        ),
        Result(
            "stats",
            "max quantile error (share of the dim's range)",
            "fraction",
            err_ours,
            err_hist,
            "running 5000-bin histogram",
            lower_is_better=True,
            note="q01..q99 against np.percentile in float64; ours is exact up to float32 rounding",
            extra={"ours_exact": err_ours < 1e-6},
        ),
    ]
