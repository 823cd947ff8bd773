"""What the input costs, per step and per rank: the share of the step spent waiting for the batch, the
bytes fetched into the shard cache (by the rank's dataloader workers, their prefetch threads and its
held-out batches) and the share of samples whose shard was already in the cache when the batch needed
it. `data_wait` is the largest rank's share (the step waits for the slowest); the other totals are over
all ranks; `<column>/rank<r>` columns give each rank's own."""

from __future__ import annotations

__all__ = ["INPUT_COLUMNS", "input_columns", "rank_columns"]

INPUT_COLUMNS = ["data_wait", "fetched_bytes", "cache_hit_rate"]


def rank_columns(processes: int) -> list[str]:
    return [f"{c}/rank{r}" for r in range(processes) for c in INPUT_COLUMNS]


def _hit_rate(counts: dict, cached: bool) -> float | None:
    n = counts.get("hits", 0) + counts.get("misses", 0)
    return round(counts["hits"] / n, 4) if cached and n else None


def input_columns(parts: list[dict], cached: bool) -> dict:
    """The input columns of one step from every rank's part (`wait`, `time`, `input` counters);
    `cached`: whether the run reads through the shard cache (else hit rates stay empty)."""
    out: dict = {}
    total = {"hits": 0, "misses": 0, "fetched_bytes": 0}
    for r, p in enumerate(parts):
        counts = p["input"]
        out[f"data_wait/rank{r}"] = round(p["wait"] / p["time"], 3) if p["time"] > 0 else 0.0
        out[f"fetched_bytes/rank{r}"] = counts.get("fetched_bytes", 0)
        out[f"cache_hit_rate/rank{r}"] = _hit_rate(counts, cached)
        for k in total:
            total[k] += counts.get(k, 0)
    out["data_wait"] = max(out[f"data_wait/rank{r}"] for r in range(len(parts)))
    out["fetched_bytes"] = total["fetched_bytes"]
    out["cache_hit_rate"] = _hit_rate(total, cached)
    return out
