"""The stats step's work units, run by the engine's workers where the frames are: each reads a run of
kept episodes' frame Parquet (state and action columns only, with polars), puts them through the stats
chain, and writes its partial summary (transforms/stats_merge.py) to `work/stats_parts/`:

- pass 1: the first-pass summaries of the state rows and of the action chunk steps, the episodes' seeded
  FAST-fit chunk draw (before normalization), and the frames' distinct texts;
- pass 2: the second-pass summaries, against the plan the driver made from the merged first pass.

The driver (pipelines/stats_step.py) merges the partial files one at a time in task order."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import polars as pl

from vlamix.pipelines.progress import mark
from vlamix.schemas.embodiment import Embodiment
from vlamix.shards.store import store_for
from vlamix.shards.workdir import WorkDir
from vlamix.transforms.chain import apply, stats_chain
from vlamix.transforms.stats_merge import FirstPass, Plan, SecondPass

__all__ = ["TASK_FRAMES", "TEXT_COLUMNS", "StatsUnit", "cap_draw", "fit_quota", "read_part", "subsample"]

# frames a stats unit reads (whole episodes): every step of every chunk, with its order keys, is ~100 KB a
# frame, so 2,000 frames keep a unit (in a worker, or in the driver for small ingests) near 200 MB at any
# dataset size; 20,000 made the driver's peak grow 1.2x from 1x to 4x the benchmark's episodes
TASK_FRAMES = 2_000
TEXT_COLUMNS = ("task", "subtask", "verbal_instruction")


def subsample(n: int, p: float, seed: list[int]) -> np.ndarray:
    """Frames 0..n-1, or below a share `p` < 1 those a seeded draw keeps (the same on every engine)."""
    frames = np.arange(n)
    return frames if p >= 1.0 else frames[np.random.default_rng(seed).random(n) < p]


def fit_quota(cap: int, frames: int, all_frames: int) -> int:
    """A dataset's most FAST-fit chunks: its frames' share of `--fast-fit-chunks`, rounded down, so the
    datasets' quotas add up to at most the cap (every frame's chunk when the frames in all are fewer)."""
    return frames if all_frames <= cap else cap * frames // all_frames


def cap_draw(n: int, quota: int, seed: list[int]) -> np.ndarray:
    """Of `n` drawn chunks, in order, the positions kept: all of them up to `quota`, above it a seeded
    choice of exactly `quota` (the per-frame draw only comes near the quota; this makes it a cap)."""
    if n <= quota:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, quota, replace=False))


@dataclass(frozen=True)
class StatsUnit:
    out: str  # layout root
    dataset: str
    task: int  # the unit's number within its dataset: its partial file, and the merge order
    embodiment: Embodiment
    episodes: tuple[tuple[int, str], ...]  # (episode, its frame Parquet), in the dataset's kept order
    seed: int
    stats_p: float  # share of frames whose values enter the statistics (1.0: every frame)
    fit_p: float  # share of frames whose chunks are FAST-fit candidates
    plans: tuple[Plan, Plan] | None = None  # (state, actions): None in the first pass

    @property
    def stage(self) -> int:
        return 1 if self.plans is None else 2

    def run(self) -> str:
        """Summarize this unit's episodes; returns the partial file written (layout-relative)."""
        store = store_for(self.out)
        chain = stats_chain(self.embodiment)
        states, actions, fit, fit_episodes, texts, frames = [], [], [], [], set(), 0
        for episode, rel in self.episodes:
            columns = ["state", "action", *(TEXT_COLUMNS if self.plans is None else ())]
            with store.open(rel) as f:
                df = pl.read_parquet(f, columns=columns)
            state = np.asarray(df["state"].to_list(), np.float32)
            action = np.asarray(df["action"].to_list(), np.float32)
            frames += len(state)
            kept = subsample(len(state), self.stats_p, [self.seed, episode])
            o = apply(chain, {"state": state[kept], "episode_actions": action, "frame": kept})
            states.append(o["state"])
            actions.append(o["actions"].reshape(-1, self.embodiment.action_dim))  # every step of every chunk
            if self.plans is None:
                for col in TEXT_COLUMNS:
                    texts |= {t for t in df[col].unique().to_list() if t}
                drawn = subsample(len(state), self.fit_p, [self.seed, 7, episode])
                chunks = apply(chain, {"state": state[drawn], "episode_actions": action, "frame": drawn})[
                    "actions"
                ]
                fit.append(chunks)
                fit_episodes.append(np.full(len(chunks), episode, np.int64))
        state_rows, action_rows = np.concatenate(states), np.concatenate(actions)
        if self.plans is None:
            arrays = {
                **_first("state", FirstPass.of(state_rows)),
                **_first("actions", FirstPass.of(action_rows)),
                "fit_chunks": np.concatenate(fit),
                "fit_episodes": np.concatenate(fit_episodes),
                "texts": np.frombuffer(json.dumps(sorted(texts)).encode(), np.uint8),
            }
        else:
            arrays = {
                **_second("state", SecondPass.of(state_rows, self.plans[0])),
                **_second("actions", SecondPass.of(action_rows, self.plans[1])),
            }
        rel = WorkDir.stats_part(self.dataset, self.stage, self.task)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        store.write_bytes(rel, buf.getvalue())
        mark(self.out, "stats", f"{self.dataset}-{self.stage}-{self.task:06d}", frames)
        return rel


def _flat(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-dim sparse (key, count) pairs as three flat arrays: the lengths, the keys, the counts."""
    lengths = np.array([len(k) for k, _ in pairs], np.int64)
    keys = np.concatenate([k for k, _ in pairs]) if pairs else np.zeros(0, np.int64)
    counts = np.concatenate([c for _, c in pairs]) if pairs else np.zeros(0, np.int64)
    return lengths, keys, counts


def _unflat(lengths: np.ndarray, keys: np.ndarray, counts: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    ends = np.cumsum(lengths)
    starts = ends - lengths
    return [(keys[a:b], counts[a:b]) for a, b in zip(starts, ends, strict=True)]


def _first(part: str, s: FirstPass) -> dict[str, np.ndarray]:
    lengths, keys, counts = _flat(s.high)
    return {
        f"{part}_count": np.array(s.count),
        f"{part}_total": s.total,
        f"{part}_lo": s.lo,
        f"{part}_hi": s.hi,
        f"{part}_high_lengths": lengths,
        f"{part}_high_keys": keys,
        f"{part}_high_counts": counts,
    }


def _second(part: str, s: SecondPass) -> dict[str, np.ndarray]:
    lengths, keys, counts = _flat([pair for per_dim in s.low for pair in per_dim])
    return {
        f"{part}_squares": s.squares,
        f"{part}_hist": s.hist,
        f"{part}_buckets_per_dim": np.array([len(per_dim) for per_dim in s.low], np.int64),
        f"{part}_low_lengths": lengths,
        f"{part}_low_keys": keys,
        f"{part}_low_counts": counts,
    }


def read_part(out: str, rel: str) -> dict[str, object]:
    """A partial file back as {"state": FirstPass | SecondPass, "actions": ..., and the first pass's
    "fit_chunks", "fit_episodes", "texts"}."""
    with store_for(out).open(rel) as f, np.load(f) as z:
        a = {k: z[k] for k in z.files}
    got: dict[str, object] = {}
    for part in ("state", "actions"):
        if f"{part}_count" in a:
            high = _unflat(a[f"{part}_high_lengths"], a[f"{part}_high_keys"], a[f"{part}_high_counts"])
            got[part] = FirstPass(
                int(a[f"{part}_count"]), a[f"{part}_total"], a[f"{part}_lo"], a[f"{part}_hi"], high
            )
        else:
            pairs = _unflat(a[f"{part}_low_lengths"], a[f"{part}_low_keys"], a[f"{part}_low_counts"])
            low, i = [], 0
            for n in a[f"{part}_buckets_per_dim"]:
                low.append(pairs[i : i + int(n)])
                i += int(n)
            got[part] = SecondPass(a[f"{part}_squares"], a[f"{part}_hist"], low)
    if "fit_chunks" in a:
        got["fit_chunks"], got["fit_episodes"] = a["fit_chunks"], a["fit_episodes"]
        got["texts"] = json.loads(a["texts"].tobytes().decode())
    return got
