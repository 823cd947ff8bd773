"""One bad source never costs the others (issue 18, class 9), and what only a whole ingest shows:
a dataset whose listing or configuration fails is recorded in the manifest as failed with its reason
and quarantine file while every other dataset is built, and the exit code is 1; the same files under
two dataset names are reported as cross-dataset duplicates (class 10); annotations address episodes by
file stem and count in frames through the real join."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import REPO, SHARED

from vlamix.shards.workdir import WorkDir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    import dataclasses

    from vlamix.sources.synthetic.mobile_aloha import SampleSpec, write_episode
    from vlamix.sources.synthetic.scenario import simulate

    root = tmp_path_factory.mktemp("one_bad_source")
    for name, seed in (("demo_red", 3), ("demo_blue", 4)):
        st = simulate(seed)
        cut = slice(100, 130)
        keys = ("action", "qpos", "qvel", "base_action", "base_pose", "cubes")
        st = dataclasses.replace(st, **{k: getattr(st, k)[cut] for k in keys})
        (root / "eps").mkdir(exist_ok=True)
        write_episode(root / "eps" / f"{name}.hdf5", st, SampleSpec(height=48, width=64))
    (root / "ann.jsonl").write_text(
        json.dumps({"dataset": "mm_a", "episode": "demo_red", "start": 10, "end": 20, "subtask": "grasp"})
        + "\n"
    )
    (root / "sources.yaml").write_text(
        "datasets:\n"
        "  - {name: mm_a, kind: MM, format: aloha_hdf5, path: eps, embodiment: mobile_aloha, task: stack}\n"
        "  - {name: mm_b, kind: MM, format: aloha_hdf5, path: eps, embodiment: mobile_aloha, task: stack}\n"
        "  - {name: bad_spec, kind: MM, format: aloha_hdf5, path: eps, embodiment: nowhere.yaml, task: stack}\n"
        "  - {name: mm_ann, kind: HL, format: annotations_jsonl, path: ann.jsonl, dataset: mm_a, units: frames}\n"
        "  - {name: web_gone, kind: WD, format: hf_parquet, path: 'bucket/*.parquet', columns: {caption: text}}\n"
        "  - {name: ann_gone, kind: VI, format: annotations_jsonl, path: nowhere.jsonl, dataset: mm_b}\n"
    )
    out = root / "out"
    cmd = [
        sys.executable,
        "-m",
        "vlamix.cli",
        "ingest",
        "--sources",
        str(root / "sources.yaml"),
        "--out",
        str(out),
    ]
    run = subprocess.run([*cmd, "--workers", "1"], capture_output=True, text=True, cwd=REPO)
    return run, out, root


def test_the_run_fails_naming_each_failed_dataset(layout):
    run, _, _ = layout
    assert run.returncode == 1, run.stderr[-2000:]
    assert "3 dataset(s) failed" in run.stderr
    assert "bad_spec" in run.stderr and "web_gone" in run.stderr and "ann_gone" in run.stderr


def test_every_other_dataset_is_built(layout):
    _, out, _ = layout
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["datasets"]) == ["mm_a", "mm_ann", "mm_b"]
    for name in ("mm_a", "mm_b"):
        acc = manifest["datasets"][name]["accounting"]
        assert (acc["read"], acc["written"]) == (2, 2)
        assert manifest["datasets"][name]["samples"] == 60
        assert manifest["datasets"][name]["episode_id"].startswith("the number ending the file name")


def test_no_absolute_path_reaches_the_manifest(layout):
    _, out, root = layout
    assert str(root) not in (out / "manifest.json").read_text()


def test_failed_datasets_are_in_the_manifest_with_reason_and_quarantine(layout):
    _, out, _ = layout
    failed = json.loads((out / "manifest.json").read_text())["failed"]
    assert sorted(failed) == ["ann_gone", "bad_spec", "web_gone"]
    assert failed["bad_spec"]["reason"] == "nowhere.yaml: no such file"
    assert failed["web_gone"]["reason"] == "'bucket/*.parquet' matches no .parquet files"
    assert failed["ann_gone"]["reason"] == "annotation file 'nowhere.jsonl' is missing (or not a file)"
    assert failed["ann_gone"]["kind"] == "VI"
    for name, entry in failed.items():
        lines = (out / entry["quarantine"]).read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["reason"].startswith("dataset failed: ")
        assert json.loads(lines[0])["dataset"] == name


def test_the_same_files_under_two_names_are_reported(layout):
    _, out, _ = layout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cross_dataset_duplicates"] == [
        {"count": 2, "datasets": ["mm_a", "mm_b"], "unit": "episode"}
    ]


def test_annotations_in_frames_by_file_stem_reach_the_right_frames(layout):
    _, out, _ = layout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["datasets"]["mm_ann"]["accounting"]["written"] == 1
    assert manifest["datasets"]["mm_ann"]["samples"] == 10
    index = pq.read_table(out / manifest["datasets"]["mm_ann"]["index"]["path"]).to_pylist()
    red = [p for p in (out / WorkDir.frames("mm_a")).glob("*.parquet")]
    frames = {r["source_file"]: r for p in red for r in pq.read_table(p).to_pylist() if r["subtask"]}
    assert {r["frame"] for r in frames.values()} <= set(range(10, 20))
    assert all(f.endswith("demo_red.hdf5") for f in frames)
    assert sorted(r["frame"] for r in index) == list(range(10, 20))


def test_the_layout_passes_check_layout(layout):
    _, out, _ = layout
    tool = SHARED / "tools" / "check-layout"
    if not tool.exists():
        pytest.skip(f"{tool} is absent (../shared ships only with the project's workspace)")
    run = subprocess.run([sys.executable, str(tool), str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_lint_accepts_the_failed_datasets_files(layout):
    """The failed datasets' quarantine files are named by the manifest: lint finds nothing stray."""
    _, out, _ = layout
    cmd = [sys.executable, "-m", "vlamix.cli", "inspect", str(out), "--lint"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "bad_spec             MM  FAILED: " in run.stdout
    assert "mm_a and mm_b hold 2 identical episode(s)" in run.stdout
