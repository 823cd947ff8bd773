"""Long runs show where they are (issue 20): each unit leaves a marker, the driver's poller turns the
markers into units and frames done of the total, frames/s and an ETA, on stderr and in
`reports/ingest.json` while the ingest runs; `--json` keeps stdout for the summary alone."""

from __future__ import annotations

import io
import json
import shutil
import time

import pytest
from conftest import SAMPLES

from vlamix.pipelines.ingest import run_ingest
from vlamix.pipelines.options import IngestOptions
from vlamix.pipelines.progress import REPORT, IngestReport, Progress, known_total, mark
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
        mark(store.url, "extract", "mm-000000", 100, {"decode": 1.5, "read": 0.25}, 2.0)
        mark(store.url, "extract", "mm-000001", 60, {"decode": 0.5}, 1.0)
        mark(store.url, "extract", "mm-000001", 60, {"decode": 0.5}, 1.0)  # an engine's retry: one marker
        mark(store.url, "extract", "merge-000000", 0, {"tar write": 0.125}, 0.5, unit=False)  # no unit
        _wait_for(lambda: report.steps["extract"]["units_done"] == 2)
        running = store.read_json(REPORT)
        assert running["running"] is True
        step = running["progress"]["extract"]
        assert (step["units_done"], step["units_total"], step["frames_done"]) == (2, 4, 160)
        assert step["frames_per_s"] > 0 and step["eta_s"] is not None and not step["finished"]
        assert p.figures(False)["eta_s"] >= 0
    final = report.steps["extract"]
    assert final["finished"] and final["eta_s"] == 0.0 and final["units_done"] == 2
    assert final["stages_s"] == {"decode": 2.0, "read": 0.25, "tar write": 0.125} and final["work_s"] == 3.5
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("progress: extract: 2/4 units, 160 frames") and lines[-1].endswith("(done)")


def test_a_step_clears_the_markers_of_the_last_run(tmp_path):
    store = Store(tmp_path / "out")
    mark(store.url, "build", "old-unit", 5)
    with Progress(IngestReport(store), "build", units=1, every=0.05, stream=io.StringIO()) as p:
        pass
    assert p.figures(True)["units_done"] == 0
    assert not store.glob(f"{WorkDir.progress('build')}/*.json")


def test_eta_follows_the_frames_where_their_total_is_known(tmp_path):
    store = Store(tmp_path / "out")
    stream = io.StringIO()
    with Progress(IngestReport(store), "extract", units=4, frames_total=400, every=60, stream=stream) as p:
        mark(store.url, "extract", "a", 100)
        mark(store.url, "extract", "b", 0)  # half the units, a quarter of the frames
        p.poll()
        p.started -= 10  # ten seconds in
        f = p.figures(False)
        assert (f["units_done"], f["frames_done"], f["frames_total"]) == (2, 100, 400)
        assert 9.5 < f["frames_per_s"] < 10.5
        assert 29 < f["eta_s"] < 31.5  # 300 frames left at 10 frames/s (the units' pace would say 10 s)
    assert "extract: 2/4 units, 100 of 400 frames" in stream.getvalue().splitlines()[-1]
    assert known_total([3, 4]) == 7 and known_total([3, None]) is None and known_total([]) == 0


def test_lines_are_printed_when_units_finish_and_never_without_show(tmp_path):
    store = Store(tmp_path / "out")
    stream = io.StringIO()
    with Progress(IngestReport(store), "build", units=2, every=0.02, stream=stream) as p:
        mark(store.url, "build", "u1", 7)
        _wait_for(lambda: p.report.steps["build"]["units_done"] == 1)
        time.sleep(0.3)  # polls with nothing new (only the rate and the time move): no line
        assert len(stream.getvalue().splitlines()) == 2
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "1/2 units, 7 frames" in lines[1] and lines[2].endswith("(done)"), lines
    quiet, report = io.StringIO(), IngestReport(store)
    with Progress(report, "build", units=1, every=0.02, stream=quiet, show=False):
        mark(store.url, "build", "u1", 7)
    assert quiet.getvalue() == ""
    assert store.read_json(REPORT)["progress"]["build"]["frames_done"] == 7  # the report all the same


def test_a_step_that_fails_keeps_its_markers_and_the_report_says_where(tmp_path):
    store = Store(tmp_path / "out")
    report = IngestReport(store)
    with pytest.raises(RuntimeError), Progress(report, "extract", units=3, every=60, stream=io.StringIO()):
        mark(store.url, "extract", "a", 5)
        raise RuntimeError("a worker died")
    assert store.glob(f"{WorkDir.progress('extract')}/*.json")  # what was done, for whoever looks
    assert not report.steps["extract"]["finished"] and report.steps["extract"]["units_done"] == 1
    report.failed("extract", RuntimeError("x"))
    written = store.read_json(REPORT)
    assert (written["running"], written["failed_step"], written["error"]) == (
        False,
        "extract",
        "RuntimeError",
    )


def test_an_ingest_that_stops_says_so_in_its_report(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="run the earlier steps first"):
        run_ingest(IngestOptions(SAMPLES / "sources.yaml", out, only="stats"))
    report = json.loads((out / REPORT).read_text())
    assert report["running"] is False and report["failed_step"] == "stats"


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
    # where the time went: every stage of both steps has seconds, within the units' own (workers summed)
    extract, build = steps["extract"]["stages_s"], steps["build"]["stages_s"]
    assert {"read", "decode", "resize", "encode", "frame parquet", "gates"} <= set(extract)
    assert {"frame parquet", "gates", "chain", "assembly", "spill", "tar write"} <= set(build)
    for step in ("extract", "build"):
        assert 0 < sum(steps[step]["stages_s"].values()) <= steps[step]["work_s"] * 1.001 + 0.01
    # every build unit knows its samples before it runs (a fresh ingest); units of a refused episode hand on none
    refused = [
        p for d in manifest["datasets"] for p in (bundled / WorkDir.build_quarantine(d)).glob("*.json")
    ]
    assert steps["build"]["frames_total"] >= samples and (
        refused or steps["build"]["frames_total"] == samples
    )
    assert not (bundled / WorkDir.progress("build")).exists()  # markers go once their step ended well
    stderr = (bundled.parent / "ingest.stderr").read_text()
    for name in ("extract", "stats", "build"):
        units = steps[name]["units_total"]
        assert f"progress: {name}: {units}/{units} units" in stderr


def test_no_progress_keeps_stderr_quiet_and_writes_the_report(bundled, tmp_path, capfd):
    out = tmp_path / "out"
    shutil.copytree(bundled, out)
    run_ingest(IngestOptions(SAMPLES / "sources.yaml", out, only="index", progress=False))
    assert "progress:" not in capfd.readouterr().err
    report = json.loads((out / REPORT).read_text())
    assert report["running"] is False and report["progress"]["index"]["finished"]
