"""great_expectations quality gates inside the ingest: one bad row injected into otherwise good data is
quarantined (its episode or item) with the failed expectation named; everything else is written; a
dataset above the allowed share of failures fails the job after the manifest is written."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, SAMPLES

pytestmark = pytest.mark.slow


def _ingest(sources, out, *extra) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "vlamix.cli", "ingest", "--sources", str(sources), "--out", str(out)]
    return subprocess.run([*cmd, "--workers", "1", *extra], capture_output=True, text=True, cwd=REPO)


def _one_value(dataset: str, row: int, col: int, value: float):
    def mutate(f) -> None:
        data = f[dataset][()]
        data[row, col] = value
        del f[dataset]
        f.create_dataset(dataset, data=data, track_times=False)

    return mutate


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    """Three good MM episodes but one joint reading of 100 rad (finite, so the reader keeps it), and a
    web parquet whose one caption went through a broken decode (U+FFFD)."""
    import dataclasses

    import h5py

    from vlamix.sources.synthetic.mobile_aloha import SampleSpec, write_episode
    from vlamix.sources.synthetic.scenario import simulate

    root = tmp_path_factory.mktemp("gates")
    for i in range(3):
        st = simulate(40 + i)
        cut = slice(100, 160)
        st = dataclasses.replace(
            st,
            **{
                k: getattr(st, k)[cut]
                for k in ("action", "qpos", "qvel", "base_action", "base_pose", "cubes")
            },
        )
        path = root / "eps" / f"episode_{i}.hdf5"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_episode(path, st, SampleSpec(height=48, width=64))
    with h5py.File(root / "eps" / "episode_1.hdf5", "r+") as f:
        _one_value("observations/qpos", 7, 3, 100.0)(f)
    table = pq.read_table(SAMPLES / "web_parquet" / "train-00000-of-00001.parquet")
    texts = table.column("text").to_pylist()
    texts[2] = "a c\ufffdt"
    (root / "web").mkdir()
    pq.write_table(
        table.set_column(1, "text", pa.array(texts)), root / "web" / "train-00000-of-00001.parquet"
    )
    sources = root / "sources.yaml"
    sources.write_text(
        "datasets:\n"
        "  - {name: mm_gate, kind: MM, format: aloha_hdf5, path: eps, embodiment: mobile_aloha, task: tidy up}\n"
        "  - {name: wd_gate, kind: WD, format: hf_parquet, path: web, columns: {image: image, caption: text}}\n"
    )
    return sources


def test_one_bad_row_is_quarantined_naming_the_expectation(dirty, tmp_path):
    out = tmp_path / "out"
    done = _ingest(dirty, out)
    # a third of mm_gate's episodes fail: above the default 10% the job fails, after writing everything
    assert done.returncode == 1, done.stderr[-2000:]
    assert (
        "quality gate failed: mm_gate: 1 of 3 rows failed" in done.stderr and "Traceback" not in done.stderr
    )
    manifest = json.loads((out / "manifest.json").read_text())
    mm, wd = manifest["datasets"]["mm_gate"], manifest["datasets"]["wd_gate"]
    assert (mm["accounting"]["written"], mm["accounting"]["quarantined"]) == (2, 1)
    assert mm["samples"] == 120 and sum(s["samples"] for s in mm["shards"]) == 120
    (q,) = [json.loads(x) for x in (out / "quarantine" / "mm_gate.jsonl").read_text().splitlines()]
    assert (q["episode"], q["frame"], q["field"]) == (1, 7, "state.left_forearm_roll")
    assert q["reason"].startswith(
        "quality gate: expect_column_values_to_be_between failed on state.left_forearm_roll"
    )
    # the web item with the broken text is quarantined alone; the other three (of four rows) are written
    (w,) = [json.loads(x) for x in (out / "quarantine" / "wd_gate.jsonl").read_text().splitlines()]
    assert "expect_column_values_to_not_match_regex" in w["reason"] and w["field"] == "text"
    assert wd["accounting"]["quarantined"] == 1 and wd["samples"] == wd["accounting"]["written"] == 2
    quality = json.loads((out / "reports" / "ingest.json").read_text())["quality"]
    assert quality["mm_gate"] == {
        "rows": 3,
        "failed": 1,
        "share": pytest.approx(1 / 3, abs=1e-5),
        "success": False,
    }
    assert quality["wd_gate"]["failed"] == 1
    html = (out / "reports" / "quality" / "index.html").read_text()
    assert "mm_gate_quality_gates" in html  # Data Docs of the dataset-level suites

    again = _ingest(dirty, tmp_path / "lenient", "--max-bad-share", "0.5")
    assert again.returncode == 0, again.stderr[-2000:]
