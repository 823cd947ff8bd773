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
    for i in range(4):
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
    # the base is parked in this window: a 3 m/s command is inside the declared range (frames pass) but
    # hundreds of spans out in normalized units (the built samples fail)
    with h5py.File(root / "eps" / "episode_3.hdf5", "r+") as f:
        _one_value("base_action", 20, 0, 3.0)(f)
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
    # half of mm_gate's episodes fail: above the default 10% the job fails, after writing everything
    assert done.returncode == 1, done.stderr[-2000:]
    assert "quality gate failed: mm_gate: 2 of 4 rows failed" in done.stderr
    assert "Traceback" not in done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    mm, wd = manifest["datasets"]["mm_gate"], manifest["datasets"]["wd_gate"]
    acc = mm["accounting"]
    assert (acc["read"], acc["written"], acc["quarantined"]) == (4, 2, 2)
    assert acc["frames_written"] == mm["samples"] == 120 == sum(s["samples"] for s in mm["shards"])
    assert acc["frames_quarantined"] == 120 and acc["frames_read"] == 240
    q, late = [json.loads(x) for x in (out / "quarantine" / "mm_gate.jsonl").read_text().splitlines()]
    assert (q["episode"], q["frame"], q["field"]) == (1, 7, "state.left_forearm_roll")
    # FAST cannot say the chunk, or the normalized band fails: the sample gate quarantined it at build
    assert late["episode"] == 3 and late["reason"].startswith("quality gate: ")
    assert late["field"] in ("actions", "actions_abs_max")
    index = pq.read_table(out / "index" / "mm_gate.parquet").column("episode").to_pylist()
    assert sorted(set(index)) == [0, 2]
    assert q["reason"].startswith(
        "quality gate: expect_column_values_to_be_between failed on state.left_forearm_roll"
    )
    # the web item with the broken text is quarantined alone; the other three (of four rows) are written
    (w,) = [json.loads(x) for x in (out / "quarantine" / "wd_gate.jsonl").read_text().splitlines()]
    assert "expect_column_values_to_not_match_regex" in w["reason"] and w["field"] == "text"
    assert wd["accounting"]["quarantined"] == 1 and wd["samples"] == wd["accounting"]["written"] == 2
    quality = json.loads((out / "reports" / "ingest.json").read_text())["quality"]
    assert quality["mm_gate"] == {"rows": 4, "failed": 2, "share": 0.5, "success": False}
    assert quality["wd_gate"]["failed"] == 1
    html = (out / "reports" / "quality" / "index.html").read_text()
    assert "mm_gate_quality_gates" in html  # Data Docs of the dataset-level suites

    again = _ingest(dirty, tmp_path / "lenient", "--max-bad-share", "0.5")
    assert again.returncode == 0, again.stderr[-2000:]
    checker = REPO.parent / "shared" / "tools" / "check-layout"
    if checker.exists():
        done = subprocess.run([sys.executable, str(checker), str(out)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout


def test_the_sample_suite_names_each_failing_sample():
    import numpy as np

    from vlamix.pipelines.quality import failures
    from vlamix.schemas.embodiment import load_embodiment
    from vlamix.schemas.expectations import sample_expectations, sample_table
    from vlamix.transforms.image import black_jpeg, encode_jpeg

    emb = load_embodiment("aloha")
    photo = encode_jpeg(np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8))

    def record(**change):
        rec = {
            "state": np.zeros(32, np.float32),
            "actions": np.zeros((50, 32), np.float32),
            "action_is_pad": np.zeros(50, bool),
            "state_dim_mask": np.arange(32) < emb.state_dim,
            "action_dim_mask": np.arange(32) < emb.action_dim,
            "input_ids": np.array([1, 5, 900]),
            **{f"image_{s}": black_jpeg() for s in ("base_0", "base_1", "left_wrist", "right_wrist")},
        }
        return rec | change

    big = np.zeros((50, 32), np.float32)
    big[3, 2] = 500.0
    records = [
        record(),
        record(actions=big),
        record(actions=big, action_is_pad=np.arange(50) >= 3),  # on a padded step it does not count
        record(image_left_wrist=b"not a jpeg"),
        record(input_ids=np.array([1, 5000])),
        record(state_dim_mask=np.arange(32) < 3),
        record(image_base_0=photo),  # a real 224x224 image decodes
        record(image_base_1=encode_jpeg(np.zeros((100, 100, 3), np.uint8))),  # decodes, at the wrong size
        record(image_right_wrist=photo[: len(photo) // 2]),  # truncated
    ]
    table = sample_table(records, emb)
    got = {
        (f.row, f.expectation, f.column)
        for f in failures(table, "samples_MM", sample_expectations(emb, 1000))
    }
    assert got == {
        (1, "expect_column_values_to_be_between", "actions_abs_max"),
        (3, "expect_column_values_to_be_in_set", "images_ok"),
        (4, "expect_column_values_to_be_between", "token_max"),
        (5, "expect_column_values_to_be_in_set", "state_dims"),
        (7, "expect_column_values_to_be_in_set", "images_ok"),
        (8, "expect_column_values_to_be_in_set", "images_ok"),
    }


def test_the_frame_suite_names_the_frame_and_dim_at_the_exact_range_edge():
    """Every state/action value is checked in one long table (two expectations, not two per dim); a
    failure still names the frame row and the dim, and the range check is exact at its bounds."""
    import numpy as np

    from vlamix.pipelines.quality import failures
    from vlamix.schemas.embodiment import dim_range, load_embodiment
    from vlamix.schemas.expectations import dim_cell, dim_expectations, dim_labels, dim_table

    emb = load_embodiment("aloha")
    labels = dim_labels(emb)
    assert len(labels) == emb.state_dim + emb.action_dim
    state = np.zeros((6, emb.state_dim))
    action = np.zeros((6, emb.action_dim))
    _, hi = dim_range(emb.state[2])
    state[1, 2] = hi  # on the bound: passes
    state[2, 2] = np.nextafter(hi, np.inf)  # the next float above it: fails
    state[3, 4] = np.inf
    alo, _ = dim_range(emb.action[5])
    action[4, 5] = np.nextafter(alo, -np.inf)
    action[5, 0] = np.nan
    table = dim_table({"state": state, "action": action}, emb)
    got = [
        (f.row, f.expectation, f.column, f.value)
        for f in failures(table, "dims_test", dim_expectations(), dim_cell(table, emb))
    ]
    assert sorted(got, key=lambda g: g[0]) == [
        (2, "expect_column_values_to_be_between", f"state.{emb.state[2].name}", np.nextafter(hi, np.inf)),
        (3, "expect_column_values_to_not_be_null", f"state.{emb.state[4].name}", None),
        (4, "expect_column_values_to_be_between", f"action.{emb.action[5].name}", np.nextafter(alo, -np.inf)),
        (5, "expect_column_values_to_not_be_null", f"action.{emb.action[0].name}", None),
    ]
