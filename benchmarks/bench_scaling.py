"""Scaling: `vlamix ingest` (2 workers) of 1x, 4x and 16x the benchmark's Mobile-ALOHA episodes at
480x640 (benchmarks/frames480.py; copies with their state nudged, so none is a duplicate): wall time
should grow linearly with the frames, and peak memory stay flat (the driver never holds a dataset;
workers hold one episode or one shard; the FAST fit runs in its own process). The marginal cost of a
frame (the seconds each added frame costs from 1x to 16x, times the 2 workers) is the per-frame cost
without the job's fixed start, reported beside the ingest benchmark's whole-job figure."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import yaml

from benchmarks import frames480
from benchmarks.bench_ingest import REPO, SAMPLES, ingest_cmd
from benchmarks.common import Result

SCALES = (1, 4, 16)
WORKERS = 2
# Runs the ingest as a child and prints the largest resident set of any process under it (the driver
# and Beam's workers): RUSAGE_CHILDREN after the child is waited for.
_WRAP = (
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)"
)


def episodes(folder: Path, scale: int, originals: Path) -> Path:
    """scale x the MM episodes in `originals`, the copies' qpos nudged by k * 1e-6 rad (distinct hashes)."""
    src = sorted(originals.glob("*.hdf5"))
    out = folder / f"mm_{scale}x"
    out.mkdir(parents=True, exist_ok=True)
    for k in range(scale):
        for i, path in enumerate(src):
            dst = out / f"episode_{k * len(src) + i}.hdf5"
            shutil.copyfile(path, dst)
            if k:
                with h5py.File(dst, "r+") as f:
                    f["observations/qpos"][...] = f["observations/qpos"][()] + k * 1e-6
    return out


def _sources(folder: Path, eps: Path) -> Path:
    spec = yaml.safe_load((SAMPLES / "sources.yaml").read_text())
    entry = next(d for d in spec["datasets"] if d["name"] == "mobile_aloha_sim")
    entry["path"] = str(eps)
    path = folder / f"{eps.name}.yaml"
    path.write_text(yaml.safe_dump({"datasets": [entry]}))
    return path


def _fit_peak(stderr: str) -> float | None:
    """The FAST fit process's own peak RSS, from the ingest's log line (tokenizers/fit_process.py)."""
    found = re.findall(r"FAST fitted on \d+ chunks in its own process \(peak RSS (\d+) MiB\)", stderr)
    return float(found[-1]) if found else None


def run(folder: Path) -> tuple[list[Result], list[dict]]:
    points = []
    originals = frames480.build(folder).parent / "mobile_aloha"
    for scale in SCALES:
        eps = episodes(folder / "episodes", scale, originals)
        out = folder / "scaling" / f"{scale}x"
        cmd = ingest_cmd(_sources(folder, eps), out, workers=WORKERS)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"scaling {scale}x failed: {done.stderr[-2000:]}")
        report = json.loads((out / "reports" / "ingest.json").read_text())
        frames = json.loads((out / "manifest.json").read_text())["datasets"]["mobile_aloha_sim"]["accounting"]
        points.append(
            {
                "scale": scale,
                "episodes": scale * 3,
                "frames": frames["frames_written"],
                "wall_s": wall,
                "driver_peak_rss_mib": report["driver_peak_rss_mib"],
                "max_process_rss_mib": int(done.stdout.strip().splitlines()[-1]) / 1024,
                "fast_fit_peak_mib": _fit_peak(done.stderr),
                "steps_seconds": report["steps_seconds"],
            }
        )
        shutil.rmtree(eps)
    first, last = points[0], points[-1]
    growth = last["frames"] / first["frames"]
    # linear time: the seconds each added frame costs, against the first run's seconds per frame
    marginal = (last["wall_s"] - first["wall_s"]) / (last["frames"] - first["frames"])
    results = [
        Result(
            "scaling",
            f"wall time {SCALES[-1]}x / {SCALES[0]}x",
            "ratio",
            last["wall_s"] / first["wall_s"],
            growth,
            f"frames {SCALES[-1]}x / {SCALES[0]}x",
            lower_is_better=True,
            goal=1.0,
            note=f"{first['frames']} -> {last['frames']} frames at 480x640; {marginal * 1e3:.2f} ms of wall "
            f"time per added frame ({WORKERS} workers: {marginal * WORKERS * 1e3:.2f} core-ms); at or under 1: the "
            "fixed start-up cost amortizes, nothing grows faster than linear",
            extra={"marginal_core_ms": marginal * WORKERS * 1e3, "points": len(points)},
        ),
        Result(
            "scaling",
            f"peak memory {SCALES[-1]}x / {SCALES[0]}x",
            "ratio",
            max(last["driver_peak_rss_mib"], last["max_process_rss_mib"])
            / max(first["driver_peak_rss_mib"], first["max_process_rss_mib"]),
            1.0,
            "flat (1.0)",
            lower_is_better=True,
            goal=1 / 1.1,  # peak within 1.1x of 1x
            note=f"largest process RSS {first['max_process_rss_mib']:.0f} -> {last['max_process_rss_mib']:.0f} MiB "
            "(getrusage over every process of the job; a child's figure includes the driver's size when it was "
            f"forked), driver {first['driver_peak_rss_mib']:.0f} -> {last['driver_peak_rss_mib']:.0f} MiB, the FAST "
            f"fit's own process {first['fast_fit_peak_mib']} -> {last['fast_fit_peak_mib']} MiB (its sample grows "
            "with the data up to --fast-fit-chunks, then stays)",
        ),
        Result(
            "scaling",
            f"driver peak memory {SCALES[-1]}x / {SCALES[0]}x",
            "ratio",
            last["driver_peak_rss_mib"] / first["driver_peak_rss_mib"],
            1.0,
            "flat (1.0)",
            lower_is_better=True,
            goal=1 / 1.1,
            note=f"the ingest driver's own peak (reports/ingest.json): {first['driver_peak_rss_mib']:.0f} -> "
            f"{last['driver_peak_rss_mib']:.0f} MiB",
        ),
    ]
    return results, points
