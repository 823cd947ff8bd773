"""Per-dim statistics of the tensors that get normalized: exact (numpy's linear quantiles), one code path
whatever engine runs. `stats/<dataset>.json` holds them, with histograms for plots."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["PERCENTILES", "STATS_VERSION", "DimStats", "compute_stats"]

STATS_VERSION = 1
PERCENTILES = (1, 2, 5, 50, 95, 98, 99)
HISTOGRAM_BINS = 32


@dataclass(frozen=True)
class DimStats:
    """Statistics of one tensor family (state or actions), each a list over its real dims."""

    count: int
    mean: list[float]
    std: list[float]
    min: list[float]
    max: list[float]
    percentiles: dict[str, list[float]]  # "q01" .. "q99"
    histograms: list[dict[str, list[float]]]  # per dim: {"edges": [...], "counts": [...]}

    @property
    def q01(self) -> np.ndarray:
        return np.asarray(self.percentiles["q01"], dtype=np.float64)

    @property
    def q99(self) -> np.ndarray:
        return np.asarray(self.percentiles["q99"], dtype=np.float64)

    def to_json(self) -> dict:
        return {
            "count": self.count,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            **self.percentiles,
            "histograms": self.histograms,
        }

    @classmethod
    def from_json(cls, d: dict) -> DimStats:
        pct = {f"q{p:02d}": d[f"q{p:02d}"] for p in PERCENTILES}
        return cls(d["count"], d["mean"], d["std"], d["min"], d["max"], pct, d["histograms"])


def _dim(col: np.ndarray) -> tuple:
    """Everything of one dim, in float64 (numpy's sort, partition and reductions release the GIL)."""
    c = col.astype(np.float64)  # our own copy: the percentiles may reorder it in place, last
    lo, hi = c.min(), c.max()
    counts, edges = np.histogram(c, bins=HISTOGRAM_BINS, range=(lo, hi) if lo < hi else None)
    mean, std = c.mean(), c.std()
    return mean, std, lo, hi, np.percentile(c, PERCENTILES, overwrite_input=True), counts, edges


def compute_stats(values: np.ndarray, threads: int = 2) -> DimStats:
    """Exact statistics of `values` [N, D] (float64 arithmetic; rounded to float32 precision on output
    so the JSON is short and stable). One dim at a time on `threads` threads: a float64 copy of one
    column at a time instead of the whole array, so memory stays near the input's own."""
    x = np.asarray(values)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"statistics need a non-empty [N, D] array, got shape {x.shape}")
    r = lambda a: [float(np.float32(v)) for v in np.atleast_1d(a)]  # noqa: E731
    with ThreadPoolExecutor(max(1, min(threads, x.shape[1]))) as pool:
        dims = list(pool.map(_dim, (x[:, d] for d in range(x.shape[1]))))
    mean, std, lo, hi, q, counts, edges = (list(v) for v in zip(*dims, strict=True))
    q = np.stack(q, axis=1)  # [percentiles, D]
    return DimStats(
        count=len(x),
        mean=r(mean),
        std=r(std),
        min=r(lo),
        max=r(hi),
        percentiles={f"q{p:02d}": r(q[i]) for i, p in enumerate(PERCENTILES)},
        histograms=[
            {"edges": r(e), "counts": [int(c) for c in n]} for n, e in zip(counts, edges, strict=True)
        ],
    )
