"""Per-dim statistics of the tensors that get normalized: exact (numpy's linear quantiles), one code path
whatever engine runs. `stats/<dataset>.json` holds them, with histograms for plots."""

from __future__ import annotations

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


def compute_stats(values: np.ndarray) -> DimStats:
    """Exact statistics of `values` [N, D] (float64 arithmetic; rounded to float32 precision on output
    so the JSON is short and stable)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"statistics need a non-empty [N, D] array, got shape {x.shape}")
    r = lambda a: [float(np.float32(v)) for v in np.atleast_1d(a)]  # noqa: E731
    q = np.percentile(x, PERCENTILES, axis=0)
    hists = []
    for d in range(x.shape[1]):
        counts, edges = np.histogram(x[:, d], bins=HISTOGRAM_BINS)
        hists.append({"edges": r(edges), "counts": [int(c) for c in counts]})
    return DimStats(
        count=len(x),
        mean=r(x.mean(axis=0)),
        std=r(x.std(axis=0)),
        min=r(x.min(axis=0)),
        max=r(x.max(axis=0)),
        percentiles={f"q{p:02d}": r(q[i]) for i, p in enumerate(PERCENTILES)},
        histograms=hists,
    )
