"""SIGKILL the whole `vlamix ingest` process group (the driver and Beam's worker processes) at several
points; the re-run gives byte-identical output, an accounting that adds up, no stray temp files, and
keeps the shards the killed run had finished."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES

from vlamix.shards.workdir import WorkDir

pytestmark = pytest.mark.slow

SOURCES = f"""
datasets:
  - name: mobile_aloha_sim
    kind: MM
    format: aloha_hdf5
    path: {SAMPLES / "mobile_aloha"}
    embodiment: mobile_aloha
    keys: {{instruction: task}}
    success: true
  - name: web_parquet
    kind: WD
    format: hf_parquet
    path: {SAMPLES / "web_parquet"}
    columns: {{image: image, caption: text}}
"""
DATASET = "mobile_aloha_sim"


def _cmd(sources: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vlamix.cli",
        "ingest",
        "--sources",
        str(sources),
        "--out",
        str(out),
        "--workers",
        "2",
        "--shard-samples",
        "40",  # ~50 shards: a wide window to kill the build in
    ]


def _run(sources: Path, out: Path) -> None:
    done = subprocess.run(_cmd(sources, out), capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]


def _published(out: Path) -> dict[str, bytes]:
    """Every published file (work/ and reports/ are not published; reports hold timings)."""
    files = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and not WorkDir.holds(rel) and not rel.startswith("reports/"):
            files[rel] = path.read_bytes()
    return files


def _kill_when(sources: Path, out: Path, ready, timeout: float = 300) -> None:
    """Start the ingest in its own process group; SIGKILL the group as soon as `ready(out)` holds."""
    proc = subprocess.Popen(
        _cmd(sources, out),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready(out):
            assert proc.poll() is None, "the ingest finished before the kill point was reached"
            assert time.monotonic() < deadline, "the kill point was never reached"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _count(folder: Path, pattern: str) -> int:
    return len(list(folder.glob(pattern))) if folder.is_dir() else 0


STAGES = {
    # the k-th episode's frame Parquet is on disk, others are being extracted
    "extract": (WorkDir.frames(DATASET), "*.parquet", (1, 2)),
    # build tasks are spilling samples, no shard written yet
    "spill": (WorkDir.spill(DATASET), "*/*.arrow", (1, 6)),
    # k shards are written, most are not
    "shards": (WorkDir.shard_summary(DATASET), "*.json", (1, 20)),
}


def kill_point(seed: int):
    """A random point of the run drawn from `seed`: seeds take the stages in turn, and how far into its
    stage the kill falls (k files of it) is drawn."""
    rng = random.Random(seed)
    stage = sorted(STAGES)[seed % len(STAGES)]
    folder, pattern, (lo, hi) = STAGES[stage]
    k = rng.randint(lo, hi)
    return stage, k, lambda out: _count(out / folder, pattern) >= k


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("kill")
    sources = root / "sources.yaml"
    sources.write_text(SOURCES)
    _run(sources, root / "ref")
    return sources, _published(root / "ref")


# `make test` kills once, in the shard-writing stage (seed 1: the case that also proves the finished
# shards are kept); the other stages' seeds are nightly.
@pytest.mark.parametrize(
    "seed", [pytest.param(0, marks=pytest.mark.nightly), 1, pytest.param(2, marks=pytest.mark.nightly)]
)
def test_rerun_after_sigkill_gives_identical_output(seed, reference, tmp_path):
    sources, expected = reference
    out = tmp_path / "out"
    point, k, ready = kill_point(seed)
    _kill_when(sources, out, ready)
    assert not (out / "manifest.json").exists()  # a reader never sees a manifest of a half-built layout
    finished = {}
    if point == "shards":
        summaries = (out / WorkDir.shard_summary(DATASET)).glob("*.json")
        tars = [out / json.loads(s.read_text())["path"] for s in summaries]
        finished = {p: p.stat().st_mtime_ns for p in tars}
        assert len(finished) >= k, "the kill left no finished shard to keep"

    _run(sources, out)

    assert _published(out) == expected
    assert not [p for p in out.rglob(".*") if ".tmp" in p.name or p.name.startswith(".tok-")]
    assert not (out / WorkDir.SPILL).exists()
    manifest = json.loads((out / "manifest.json").read_text())
    for name, d in manifest["datasets"].items():
        acc = d["accounting"]
        assert acc["read"] == acc["written"] + acc["quarantined"] + acc["duplicates"], name
        assert d["samples"] == sum(s["samples"] for s in d["shards"]), name
    summaries = sorted((out / WorkDir.shard_summary(DATASET)).glob("*.json"))
    assert len(summaries) == len(manifest["datasets"][DATASET]["shards"])
    # the shards the killed run had finished (their summary written) were kept, not rebuilt
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in finished.items())
