"""Long runs show where they are (issue 20): each unit leaves a marker, the driver's poller turns the
markers into units and frames done of the total, frames/s and an ETA, on stderr and in
`reports/ingest.json` while the ingest runs; `--json` keeps stdout for the summary alone."""

from __future__ import annotations

import io
import json
import time

from vlamix.pipelines.progress import REPORT, IngestReport, Progress, mark
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir


def _wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "the poller did not catch up"
        time.sleep(0.02)


def test_the_poller_counts_markers_and_reports_rate_and_eta(tmp_path):
    store = Store(tmp_path / "out")
    report, stream = IngestReport(store), io.StringIO()
    with Progress(report, "extract", units=4, frames_total=None, every=0.05, stream=stream) as p:
        mark(store.url, "extract", "mm-000000", 100)
        mark(store.url, "extract", "mm-000001", 60)
        mark(store.url, "extract", "mm-000001", 60)  # an engine's retry of the same unit: one marker
        _wait_for(lambda: report.steps["extract"]["units_done"] == 2)
        running = store.read_json(REPORT)
        assert running["running"] is True
        step = running["progress"]["extract"]
        assert (step["units_done"], step["units_total"], step["frames_done"]) == (2, 4, 160)
        assert step["frames_per_s"] > 0 and step["eta_s"] is not None and not step["finished"]
        assert p.figures(False)["eta_s"] >= 0
    final = report.steps["extract"]
    assert final["finished"] and final["eta_s"] == 0.0 and final["units_done"] == 2
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("progress: extract: 2/4 units, 160 frames") and lines[-1].endswith("(done)")


def test_a_step_clears_the_markers_of_the_last_run(tmp_path):
    store = Store(tmp_path / "out")
    mark(store.url, "build", "old-unit", 5)
    with Progress(IngestReport(store), "build", units=1, every=0.05, stream=io.StringIO()) as p:
        pass
    assert p.figures(True)["units_done"] == 0
    assert not store.glob(f"{WorkDir.progress('build')}/*.json")


def test_the_bundled_ingest_reports_every_step_done(bundled):
    report = json.loads((bundled / REPORT).read_text())
    manifest = json.loads((bundled / "manifest.json").read_text())
    assert report["running"] is False
    steps = report["progress"]
    assert set(steps) == {"extract", "stats", "tokenizers", "build", "index"}
    for name, step in steps.items():
        assert step["finished"], name
        assert step["units_done"] == step["units_total"], name
    acc = [d["accounting"] for d in manifest["datasets"].values()]
    # robot frames and web items the extract units read (annotation lines are read by the driver)
    read = sum(
        a["frames_read"] if a["unit"] == "episode" else a["read"] for a in acc if a["unit"] != "annotation"
    )
    assert steps["extract"]["frames_done"] == read > 0
    robot_frames = sum(a["frames_written"] for a in acc if a["unit"] == "episode")
    assert steps["stats"]["frames_done"] == steps["stats"]["frames_total"] == 2 * robot_frames
    samples = sum(s["samples"] for d in manifest["datasets"].values() for s in d["shards"])
    assert steps["build"]["frames_done"] == samples
    stderr = (bundled.parent / "ingest.stderr").read_text()
    for name in ("extract", "stats", "build"):
        units = steps[name]["units_total"]
        assert f"progress: {name}: {units}/{units} units" in stderr
