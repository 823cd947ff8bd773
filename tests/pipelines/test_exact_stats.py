"""Exact statistics at any size (issue 20): partial summaries merged in the driver equal numpy's
statistics over all the values, percentiles bit for bit on float32 input, with 300,000 values per dim
and more; through the engine path (Beam's workers write the partials, the driver merges them), above
the old 100,000-frame subsample cap, with nothing subsampled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlamix.pipelines.options import IngestOptions
from vlamix.pipelines.stats_step import step_stats
from vlamix.pipelines.stats_units import cap_draw, fit_quota, subsample
from vlamix.schemas.embodiment import load_embodiment
from vlamix.schemas.outcome import ExtractedEpisode
from vlamix.shards.workdir import WorkDir
from vlamix.sources.config import load_sources
from vlamix.transforms.chain import apply, stats_chain
from vlamix.transforms.stats import PERCENTILES, compute_stats
from vlamix.transforms.stats_merge import FirstMerge, FirstPass, Plan, SecondMerge, SecondPass, finish

EMBODIMENT = """\
name: two_joint
description: two generated dims (the exact-statistics test)
control_rate_hz: 10
control_mode: joint
gripper: {open: 0.0, closed: 1.0}
horizon: 2
state:
  - {name: a, kind: joint_position, unit: rad}
  - {name: g, kind: gripper, unit: normalized}
action:
  - {name: a, kind: joint_position, unit: rad}
  - {name: g, kind: gripper, unit: normalized}
cameras: {}
"""


def _values(n: int, seed: int = 0) -> np.ndarray:
    """Dims that break naive merging: a normal, ties on a coarse grid, 60% exact zeros (a gripper),
    negatives, a constant, a span of 1e-5 around -7, and values of very different magnitudes."""
    rng = np.random.default_rng(seed)
    cols = [
        rng.normal(0, 1, n),
        np.round(rng.normal(0, 1, n), 1),
        np.where(rng.random(n) < 0.6, 0.0, rng.random(n)),
        -rng.exponential(3, n),
        np.full(n, 0.25),
        rng.normal(-7, 1e-5, n),
        rng.normal(0, 1, n) * 10.0 ** rng.integers(-20, 20, n),
    ]
    return np.stack(cols, axis=1).astype(np.float32)


def _merged(parts: list[np.ndarray]):
    first = FirstMerge(parts[0].shape[1])
    for p in parts:
        first.add(FirstPass.of(p))
    plan = Plan.of(first)
    second = SecondMerge(plan)
    for p in reversed(parts):  # the second pass's order does not matter either
        second.add(SecondPass.of(p, plan))
    return finish(plan, second)


@pytest.mark.parametrize("n", [300_001, 300_000])  # an odd and an even count: every interpolation weight
def test_merged_partials_equal_numpy_bit_for_bit(n):
    x = _values(n)
    cuts = np.sort(np.random.default_rng(1).choice(n, 57, replace=False))
    parts = [p for p in np.split(x, cuts)]
    got, want = _merged(parts), compute_stats(x)
    q = np.percentile(x.astype(np.float64), PERCENTILES, axis=0)
    for i, p in enumerate(PERCENTILES):
        assert got.percentiles[f"q{p:02d}"] == [
            float(np.float32(v)) for v in q[i]
        ]  # numpy's own, bit for bit
    assert got.percentiles == want.percentiles
    assert got.min == want.min and got.max == want.max and got.count == want.count == n
    assert got.histograms == want.histograms
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(got.std, want.std, rtol=1e-6, atol=1e-30)


def test_float64_input_is_refused_rather_than_rounded():
    with pytest.raises(TypeError, match="float32"):
        FirstPass.of(np.zeros((3, 2)))


def _layout(
    tmp_path: Path, episodes: int, frames: int, **options
) -> tuple[IngestOptions, list[tuple[np.ndarray, np.ndarray]]]:
    """A layout whose work/ holds `episodes` extracted episodes of generated frames (what the extract
    step leaves), and the raw (state, action) of each."""
    (tmp_path / "two_joint.yaml").write_text(EMBODIMENT)
    (tmp_path / "sources.yaml").write_text(
        "datasets:\n  - {name: big, kind: CE, format: rlds, path: none, embodiment: two_joint.yaml, task: t}\n"
    )
    opts = IngestOptions(tmp_path / "sources.yaml", tmp_path / "out", workers=2, **options)
    work, raw, records = opts.work, [], []
    for e in range(episodes):
        v = _values(frames, seed=10 + e)
        state, action = v[:, [0, 2]], v[:, [3, 5]]
        rel = WorkDir.frames("big", e)
        with work.store.open_write(rel) as f:
            table = pa.table(
                {
                    "state": pa.array(state.tolist(), pa.list_(pa.float32())),
                    "action": pa.array(action.tolist(), pa.list_(pa.float32())),
                    "task": ["t"] * frames,
                    "subtask": pa.nulls(frames, pa.string()),
                    "verbal_instruction": pa.nulls(frames, pa.string()),
                }
            )
            pq.write_table(table, f)
        records.append(ExtractedEpisode("big", e, frames, f"h{e}", "train", f"ep{e}", rel, frames))
        raw.append((state, action))
    work.write_outcomes("extracted", "big", records)
    work.write_outcomes("quarantined", "big", [])
    return opts, raw


# Ray nightly: a local Ray start costs ~10 s, and the two-node Ray run in `make test` already compares
# the stats step's bytes on Ray with Beam's (tests/pipelines/test_ray_cluster.py).
@pytest.mark.slow
@pytest.mark.parametrize("engine", ["beam", pytest.param("ray", marks=pytest.mark.nightly)])
def test_the_stats_step_on_the_engine_is_exact_above_the_old_cap(tmp_path, engine):
    opts, raw = _layout(tmp_path, episodes=30, frames=10_001, engine=engine)  # 300,030 frames: 3x the old cap
    step_stats(opts, load_sources(opts.sources))
    doc = opts.store.read_json("stats/big.json")
    assert doc["frames"] == 300_030 and not doc["subsampled"]
    chain = stats_chain(load_embodiment(tmp_path / "two_joint.yaml"))
    outs = [apply(chain, {"state": s, "episode_actions": a, "frame": np.arange(len(s))}) for s, a in raw]
    for part, rows in (
        ("state", [o["state"] for o in outs]),
        ("actions", [o["actions"].reshape(-1, 2) for o in outs]),
    ):
        x = np.concatenate(rows).astype(np.float64)
        assert len(x) >= 300_000 and doc[part]["count"] == len(x)
        q = np.percentile(x, PERCENTILES, axis=0)
        for i, p in enumerate(PERCENTILES):
            assert doc[part][f"q{p:02d}"] == [float(np.float32(v)) for v in q[i]], (part, p)
        assert doc[part]["min"] == [float(np.float32(v)) for v in x.min(0)]
        np.testing.assert_allclose(doc[part]["mean"], x.mean(0), rtol=1e-6)
        np.testing.assert_allclose(doc[part]["std"], x.std(0), rtol=1e-6)
    assert not opts.store.glob(f"{WorkDir.STATS_PARTS}/**/*")  # the partial files are gone
    with opts.store.open(WorkDir.fit_chunks("big")) as f, np.load(f) as npz:
        # the units' per-frame draws come near the cap; the driver's seeded choice keeps them under it
        assert opts.fast_fit_chunks * 0.97 <= len(npz["chunks"]) <= opts.fast_fit_chunks
        assert (np.diff(npz["episodes"]) >= 0).all()


def _fit_file(opts: IngestOptions) -> bytes:
    step_stats(opts, load_sources(opts.sources), run=lambda _, units: [u.run() for u in units])
    return opts.store.read_bytes(WorkDir.fit_chunks("big"))


def test_the_fast_fit_draw_is_capped_and_seeded(tmp_path):
    """Above --fast-fit-chunks, the units' per-frame draws come near the cap and, where they overshoot
    it, the driver's seeded choice brings them to it: the same chunks every run, each a real chunk of
    its episode, in episode order. Under the cap, every frame's chunk."""
    opts, raw = _layout(tmp_path, episodes=4, frames=1_000, fast_fit_chunks=600)
    drawn = sum(len(subsample(1_000, 600 / 4_000, [opts.seed, 7, e])) for e in range(4))
    assert drawn > 600  # the per-frame draws overshoot here (610): the cap is what this test holds
    first = _fit_file(opts)
    assert _fit_file(opts) == first
    with opts.store.open(WorkDir.fit_chunks("big")) as f, np.load(f) as npz:
        chunks, episodes = npz["chunks"], npz["episodes"]
    assert len(chunks) == 600 and (np.diff(episodes) >= 0).all() and len(np.unique(episodes)) == 4
    chain = stats_chain(load_embodiment(tmp_path / "two_joint.yaml"))
    for e, (s, a) in enumerate(raw):
        every = apply(chain, {"state": s, "episode_actions": a, "frame": np.arange(len(s))})["actions"]
        known = {c.tobytes() for c in every}
        assert all(c.tobytes() in known for c in chunks[episodes == e])
    (tmp_path / "below").mkdir()
    below, _ = _layout(tmp_path / "below", episodes=2, frames=300, fast_fit_chunks=600)
    _fit_file(below)
    with below.store.open(WorkDir.fit_chunks("big")) as f, np.load(f) as npz:
        assert len(npz["chunks"]) == 600  # under the cap: every frame's chunk


def test_fit_quotas_add_up_to_the_cap_at_most_and_the_cap_draw_is_seeded():
    frames = [7_001, 12_999, 333]
    quotas = [fit_quota(5_000, f, sum(frames)) for f in frames]
    assert sum(quotas) <= 5_000 and quotas == [1_721, 3_196, 81]
    assert [fit_quota(50_000, f, sum(frames)) for f in frames] == frames  # under the cap: every chunk
    kept = cap_draw(1_000, 300, [0, 7, 1])
    assert len(kept) == 300 and (np.diff(kept) > 0).all() and kept.max() < 1_000
    assert (cap_draw(1_000, 300, [0, 7, 1]) == kept).all() and not (
        cap_draw(1_000, 300, [0, 7, 2]) == kept
    ).all()
    assert (cap_draw(250, 300, [0, 7, 1]) == np.arange(250)).all()
