"""The driver's peak memory stays flat as the input grows (1x to 5x): nothing collects a dataset in the
driver.
Beam runs in-process here (one worker), so the driver's peak also holds the work of every step, a stats
unit's included: a unit reads up to TASK_FRAMES (2,000) frames, about the 5x input, so its values
grow with the input here (on an engine with workers they never reach the driver, whose merge of the
partial summaries takes memory independent of the frames: tests/pipelines/test_exact_stats.py). The
test therefore caps the values a unit summarizes (--stats-max-frames, opt-in) and the FAST fit's
candidates (--fast-fit-chunks) below the 1x input, so both runs sit at the caps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

# nightly: two ingests (1x and 5x, ~3,300 frames) to measure a scaling property, not a result; `make bench`
# measures the same peak from 1x to 16x (benchmarks/RESULTS.md).
pytestmark = [pytest.mark.slow, pytest.mark.nightly]

MARGIN_MIB = 64  # the peak varies by up to ~50 MiB between runs of the same input (GC, Beam's threads)


def _ingest(root) -> tuple[float, int, int]:
    (root / "sources.yaml").write_text(
        "datasets:\n  - {name: mm_mem, kind: MM, format: aloha_hdf5, path: eps, embodiment: mobile_aloha, task: tidy}\n"
    )
    cmd = [sys.executable, "-m", "vlamix.cli", "ingest", "--sources", str(root / "sources.yaml")]
    cmd += ["--out", str(root / "out"), "--workers", "1", "--shard-samples", "200"]
    # the in-process stats unit and the FAST fit hold their (capped) subsample: caps below 1x make both runs hit them
    cmd += ["--stats-max-frames", "500", "--fast-fit-chunks", "500"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((root / "out" / "reports" / "ingest.json").read_text())
    d = json.loads((root / "out" / "manifest.json").read_text())["datasets"]["mm_mem"]
    return report["driver_peak_rss_mib"], sum(s["bytes"] for s in d["shards"]), d["samples"]


def test_driver_peak_memory_is_flat_from_1x_to_5x(tmp_path, make_aloha_episode):
    # whole simulated episodes (~670 frames, every dim moving), cameras at the samples' 120x160
    for i in range(5):
        make_aloha_episode(
            tmp_path / "x5" / "eps" / f"episode_{i}.hdf5", frames=2000, seed=100 + i, start=0, size=(120, 160)
        )
    (tmp_path / "x1" / "eps").mkdir(parents=True)
    shutil.copyfile(tmp_path / "x5" / "eps" / "episode_0.hdf5", tmp_path / "x1" / "eps" / "episode_0.hdf5")
    peak_1x, bytes_1x, samples_1x = _ingest(tmp_path / "x1")
    peak_5x, bytes_5x, samples_5x = _ingest(tmp_path / "x5")
    assert samples_5x > 4.5 * samples_1x
    grown_mib = (bytes_5x - bytes_1x) / 2**20
    # collecting the samples in the driver would break the margin
    assert grown_mib > 1.5 * MARGIN_MIB
    assert peak_5x < peak_1x + MARGIN_MIB, (
        f"driver peak {peak_1x:.0f} MiB at 1x, {peak_5x:.0f} MiB at 5x ({grown_mib:.0f} MiB more shard data)"
    )
