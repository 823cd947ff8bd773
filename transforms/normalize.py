"""Quantile normalization (openpi's: q01..q99 -> -1..1), z-score normalization, and their exact inverses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EPS", "QuantileNormalize", "QuantileUnnormalize", "ZScoreNormalize", "ZScoreUnnormalize"]

EPS = 1e-6


def _same_width(fields: dict, key: str, stats_width: int) -> dict:
    """A normalizer changes no shape, but its statistics must have as many dims as the field."""
    if fields[key][-1] != stats_width:
        raise ValueError(
            f"{key} has {fields[key][-1]} dims, the statistics {stats_width}: stats of another embodiment?"
        )
    return fields


@dataclass(frozen=True)
class QuantileNormalize:
    """x' = (x - q01) / (q99 - q01 + eps) * 2 - 1 over the last axis of `key`."""

    key: str
    q01: tuple[float, ...]
    q99: tuple[float, ...]

    def features(self, fields: dict) -> dict:
        return _same_width(fields, self.key, len(self.q01))

    def __call__(self, sample: dict) -> dict:
        x = np.asarray(sample[self.key], dtype=np.float64)
        lo, hi = np.asarray(self.q01), np.asarray(self.q99)
        return {**sample, self.key: ((x - lo) / (hi - lo + EPS) * 2.0 - 1.0).astype(np.float32)}

    def inverse(self) -> QuantileUnnormalize:
        return QuantileUnnormalize(self.key, self.q01, self.q99)


@dataclass(frozen=True)
class QuantileUnnormalize:
    key: str
    q01: tuple[float, ...]
    q99: tuple[float, ...]

    def features(self, fields: dict) -> dict:
        return _same_width(fields, self.key, len(self.q01))

    def __call__(self, sample: dict) -> dict:
        x = np.asarray(sample[self.key], dtype=np.float64)
        lo, hi = np.asarray(self.q01), np.asarray(self.q99)
        return {**sample, self.key: ((x + 1.0) / 2.0 * (hi - lo + EPS) + lo).astype(np.float32)}

    def inverse(self) -> QuantileNormalize:
        return QuantileNormalize(self.key, self.q01, self.q99)


@dataclass(frozen=True)
class ZScoreNormalize:
    """x' = (x - mean) / (std + eps) over the last axis of `key` (pi0's normalization)."""

    key: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def features(self, fields: dict) -> dict:
        return _same_width(fields, self.key, len(self.mean))

    def __call__(self, sample: dict) -> dict:
        x = np.asarray(sample[self.key], dtype=np.float64)
        return {
            **sample,
            self.key: ((x - np.asarray(self.mean)) / (np.asarray(self.std) + EPS)).astype(np.float32),
        }

    def inverse(self) -> ZScoreUnnormalize:
        return ZScoreUnnormalize(self.key, self.mean, self.std)


@dataclass(frozen=True)
class ZScoreUnnormalize:
    key: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def features(self, fields: dict) -> dict:
        return _same_width(fields, self.key, len(self.mean))

    def __call__(self, sample: dict) -> dict:
        x = np.asarray(sample[self.key], dtype=np.float64)
        return {
            **sample,
            self.key: (x * (np.asarray(self.std) + EPS) + np.asarray(self.mean)).astype(np.float32),
        }

    def inverse(self) -> ZScoreNormalize:
        return ZScoreNormalize(self.key, self.mean, self.std)
