"""Exact per-dim statistics from mergeable partial summaries: the engine's workers summarize their part of
the values, the driver merges the summaries with memory independent of the number of values, and the
result equals `compute_stats` (numpy) on all the values at once.

Two passes over float32 values `[N, D]`:

1. `FirstPass.of(values)`: the count, the float64 sum, min and max per dim, and a histogram of the top 16
   bits of each value's order key (float32 bits mapped so that integer order is float order), kept
   sparse. `FirstMerge` adds them up (a dense 65,536-bin count per dim). `Plan.of(first)` then knows the
   mean and, for every percentile, the two order statistics numpy's linear method interpolates between
   (their 0-based ranks) and the top-16-bit bucket that holds each.
2. `SecondPass.of(values, plan)`: per dim the sum of squared deviations from the merged mean (numpy's
   std is sqrt(mean(|x - mean|^2))), the 32-bin plot histogram over [min, max] (binning is per value, so
   summing per-part histograms gives the whole one), and, for each bucket holding an order statistic,
   the histogram of the low 16 bits of the values in it. `SecondMerge` adds them up; `finish` reads the
   exact order statistics off the bucket histograms and interpolates exactly as `np.percentile` does
   (`(n - 1) * q` as the virtual index, numpy's `_lerp`, in float64).

Driver memory: 512 KiB per dim for the first pass, and 512 KiB per (dim, bucket holding an order
statistic): at most 14 buckets per dim, usually far fewer. `-0.0` counts as `0.0` (numpy's sort treats
them as equal; a percentile falling on a zero is reported as `0.0`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlamix.transforms.stats import HISTOGRAM_BINS, PERCENTILES, DimStats

__all__ = ["FirstMerge", "FirstPass", "Plan", "SecondMerge", "SecondPass", "finish", "order_keys"]

_BUCKETS = 1 << 16
_SIGN = np.uint32(0x80000000)


def order_keys(values: np.ndarray) -> np.ndarray:
    """uint32 keys whose integer order is the float32 values' order (-0.0 counts as 0.0)."""
    if values.dtype != np.float32:
        raise TypeError(f"exact statistics are taken over float32 values, got {values.dtype}")
    bits = (values + np.float32(0.0)).view(np.uint32)  # -0.0 + 0.0 is +0.0
    # negative: every bit flipped (all ones from the arithmetic shift); else the sign bit set
    return bits ^ ((bits.view(np.int32) >> 31).view(np.uint32) | _SIGN)


def _from_key(key: int) -> float:
    """The float32 value (as a Python float) whose order key is `key`."""
    k = np.uint32(key)
    bits = k & ~_SIGN if k & _SIGN else ~k
    return float(np.asarray(bits, np.uint32).view(np.float32))


def _sparse(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A dense count as its (bin, count) pairs where the count is not zero, bins ascending."""
    bins = np.flatnonzero(dense)
    return bins.astype(np.int64), dense[bins].astype(np.int64)


def _count(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How many of the 16-bit `keys` fall on each value, sparse (a bincount: linear time, no sort)."""
    return _sparse(np.bincount(keys, minlength=_BUCKETS))


@dataclass
class FirstPass:
    count: int
    total: np.ndarray  # float64 [D]
    lo: np.ndarray  # float64 [D]
    hi: np.ndarray
    high: list[tuple[np.ndarray, np.ndarray]]  # per dim: (top-16-bit bucket, count), sparse

    @classmethod
    def of(cls, values: np.ndarray) -> FirstPass:
        keys = order_keys(values)
        if len(values) == 0:
            dims = values.shape[1]
            empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
            return cls(0, np.zeros(dims), np.full(dims, np.inf), np.full(dims, -np.inf), [empty] * dims)
        x = values.astype(np.float64)
        return cls(
            len(values),
            x.sum(axis=0),
            x.min(axis=0),
            x.max(axis=0),
            [_count(keys[:, d] >> 16) for d in range(values.shape[1])],
        )


class FirstMerge:
    """The sum of first passes, in the order they are added (the driver adds them in a fixed order)."""

    def __init__(self, dims: int):
        self.count = 0
        self.total = np.zeros(dims)
        self.lo = np.full(dims, np.inf)
        self.hi = np.full(dims, -np.inf)
        self.high = np.zeros((dims, _BUCKETS), np.int64)

    def add(self, part: FirstPass) -> None:
        if part.count == 0:
            return
        self.count += part.count
        self.total += part.total
        self.lo = np.minimum(self.lo, part.lo)
        self.hi = np.maximum(self.hi, part.hi)
        for d, (buckets, counts) in enumerate(part.high):
            np.add.at(self.high[d], buckets, counts)


@dataclass(frozen=True)
class Plan:
    """What the second pass needs: the mean, the plot histogram's range, and per dim the buckets holding
    an order statistic; and, to finish, each percentile's ranks and interpolation weight."""

    count: int
    mean: np.ndarray  # [D]
    lo: np.ndarray
    hi: np.ndarray
    buckets: tuple[tuple[int, ...], ...]  # per dim: the buckets the second pass histograms (sorted)
    below: tuple[tuple[int, ...], ...]  # per dim and bucket: how many values lie in lower buckets
    ranks: tuple[tuple[int, int], ...]  # per percentile: (previous, next) 0-based ranks
    gamma: np.ndarray  # per percentile: numpy's interpolation weight
    percentiles: tuple[int, ...] = PERCENTILES

    @classmethod
    def of(cls, first: FirstMerge, percentiles: tuple[int, ...] = PERCENTILES) -> Plan:
        """`percentiles`: integer percents (the layout's statistics use PERCENTILES; an export may ask
        for its own trainer's set, e.g. LeRobot's 1, 10, 50, 90, 99)."""
        n = first.count
        if n == 0:
            raise ValueError("statistics need at least one value")
        virtual = (n - 1) * np.true_divide(percentiles, 100)  # numpy's linear method, as it computes it
        previous = np.floor(virtual)
        nxt = previous + 1
        top = virtual >= n - 1
        previous[top], nxt[top] = n - 1, n - 1
        gamma = virtual - np.where(top, -1, previous)  # as numpy: its index there is -1 (the last)
        ranks = tuple((int(p), int(q)) for p, q in zip(previous, nxt, strict=True))
        wanted = sorted({r for pair in ranks for r in pair})
        buckets, below = [], []
        for d in range(first.high.shape[0]):
            cum = np.cumsum(first.high[d])
            held = sorted({int(np.searchsorted(cum, r, side="right")) for r in wanted})
            buckets.append(tuple(held))
            below.append(tuple(int(cum[b - 1]) if b else 0 for b in held))
        return cls(
            n,
            first.total / n,
            first.lo.copy(),
            first.hi.copy(),
            tuple(buckets),
            tuple(below),
            ranks,
            gamma,
            tuple(percentiles),
        )

    def hist_range(self, d: int) -> tuple[float, float]:
        lo, hi = float(self.lo[d]), float(self.hi[d])
        return (lo, hi) if lo < hi else (lo - 0.5, hi + 0.5)  # numpy's own range for one value


@dataclass
class SecondPass:
    squares: np.ndarray  # float64 [D]: sum of (x - mean)^2
    hist: np.ndarray  # int64 [D, HISTOGRAM_BINS]
    low: list[list[tuple[np.ndarray, np.ndarray]]]  # per dim, per plan bucket: (low 16 bits, count)

    @classmethod
    def of(cls, values: np.ndarray, plan: Plan) -> SecondPass:
        keys = order_keys(values)
        x = values.astype(np.float64)
        dims = values.shape[1]
        hist = np.zeros((dims, HISTOGRAM_BINS), np.int64)
        low = []
        for d in range(dims):
            hist[d] = np.histogram(x[:, d], bins=HISTOGRAM_BINS, range=plan.hist_range(d))[0]
            low.append(_low_counts(keys[:, d], plan.buckets[d]))
        deviations = x - plan.mean
        return cls(np.square(deviations, out=deviations).sum(axis=0), hist, low)


def _low_counts(keys: np.ndarray, buckets: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per bucket of `buckets`, the sparse count of the low 16 bits of the keys it holds (a scan of the
    keys per bucket: at most 14 buckets, and cheaper than one bincount over all of them)."""
    high = keys >> 16
    return [_count(keys[high == b] & 0xFFFF) for b in buckets]


class SecondMerge:
    def __init__(self, plan: Plan):
        dims = len(plan.buckets)
        self.squares = np.zeros(dims)
        self.hist = np.zeros((dims, HISTOGRAM_BINS), np.int64)
        self.low = [np.zeros((len(plan.buckets[d]), _BUCKETS), np.int64) for d in range(dims)]

    def add(self, part: SecondPass) -> None:
        self.squares += part.squares
        self.hist += part.hist
        for d, per_bucket in enumerate(part.low):
            for j, (lows, counts) in enumerate(per_bucket):
                np.add.at(self.low[d][j], lows, counts)


def _order_statistic(plan: Plan, second: SecondMerge, d: int, rank: int) -> float:
    for j, (bucket, below) in enumerate(zip(plan.buckets[d], plan.below[d], strict=True)):
        cum = np.cumsum(second.low[d][j])
        if below <= rank < below + int(cum[-1]):
            low = int(np.searchsorted(cum, rank - below, side="right"))
            return _from_key((bucket << 16) | low)
    raise AssertionError(f"rank {rank} of dim {d} lies in no planned bucket")


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's `_lerp`, so the percentiles are numpy's bit for bit."""
    diff = b - a
    out = np.add(a, diff * t)
    np.subtract(b, diff * (1 - t), out=out, where=t >= 0.5)
    return out


def finish(plan: Plan, second: SecondMerge) -> DimStats:
    """The statistics, rounded to float32 precision as `compute_stats` rounds them."""
    r = lambda a: [float(np.float32(v)) for v in np.atleast_1d(a)]  # noqa: E731
    dims = len(plan.buckets)
    prev = np.array([[_order_statistic(plan, second, d, p) for d in range(dims)] for p, _ in plan.ranks])
    nxt = np.array([[_order_statistic(plan, second, d, q) for d in range(dims)] for _, q in plan.ranks])
    q = _lerp(prev, nxt, plan.gamma[:, None])  # [percentiles, D]
    std = np.sqrt(second.squares / plan.count)
    histograms = []
    for d in range(dims):
        edges = np.histogram_bin_edges(np.empty(0), bins=HISTOGRAM_BINS, range=plan.hist_range(d))
        histograms.append({"edges": r(edges), "counts": [int(c) for c in second.hist[d]]})
    return DimStats(
        count=plan.count,
        mean=r(plan.mean),
        std=r(std),
        min=r(plan.lo),
        max=r(plan.hi),
        percentiles={f"q{p:02d}": r(q[i]) for i, p in enumerate(plan.percentiles)},
        histograms=histograms,
    )
