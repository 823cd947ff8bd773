"""The export's options and guarantees: resumable and atomic, S3 as a destination, the subtask-index form of
LeRobot 0.4/0.5, GR00T's modality.json, openpi's norm_stats.json, and one-line refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import REPO
from servers import s3_server

from vlamix.exports.layout_source import ExportError, export_datasets, open_layout
from vlamix.exports.lerobot_export import ExportOptions, export_one
from vlamix.exports.openpi_norm import openpi_norm_stats
from vlamix.shards.workdir import WorkDir

pytestmark = pytest.mark.slow


def vlamix(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vlamix.cli", *args], capture_output=True, text=True, cwd=REPO
    )


def in_process(capsys, *args: str) -> tuple[int, str]:
    """(exit code, stderr) of `vlamix ARGS` run in this process (no interpreter start-up)."""
    from vlamix.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(list(args))
    return int(e.value.code or 0), capsys.readouterr().err


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class Cut(Exception):
    pass


def test_a_cut_export_leaves_nothing_in_place_and_resumes_to_the_same_bytes(bundled, tmp_path):
    layout = open_layout(bundled)
    opts = ExportOptions(frames_per_file=30)  # robomimic_sim: 3 episodes of 36 frames -> 3 file groups
    whole = export_one(layout, "robomimic_sim", str(tmp_path / "whole"), opts)
    assert whole["files"] == 3

    def cut_after_first(name: str, done: int, total: int) -> None:
        raise Cut(f"{name}: killed at {done}/{total}")

    with pytest.raises(Cut):
        export_one(layout, "robomimic_sim", str(tmp_path / "cut"), opts, cut_after_first)
    assert not (tmp_path / "cut" / "robomimic_sim").exists()  # nothing half-made where readers look
    (staging,) = (tmp_path / "cut").glob(".robomimic_sim.partial-*")
    assert len(list((staging / ".progress").glob("group-*.json"))) == 1
    again = export_one(layout, "robomimic_sim", str(tmp_path / "cut"), opts)
    assert again["groups_reused"] == 1 and not again["unchanged"]
    assert _files(tmp_path / "cut" / "robomimic_sim") == _files(tmp_path / "whole" / "robomimic_sim")
    assert not list((tmp_path / "cut").glob(".robomimic_sim.partial-*"))
    assert export_one(layout, "robomimic_sim", str(tmp_path / "cut"), opts)["unchanged"]
    with pytest.raises(ExportError, match="--overwrite"):
        export_one(layout, "robomimic_sim", str(tmp_path / "cut"), ExportOptions(frames_per_file=60))
    replaced = export_one(
        layout, "robomimic_sim", str(tmp_path / "cut"), ExportOptions(frames_per_file=60, overwrite=True)
    )
    assert replaced["files"] == 2 and len(list((tmp_path / "cut/robomimic_sim/data").rglob("*.parquet"))) == 2


def test_export_to_s3_sends_every_file_with_info_json_last(bundled, tmp_path):
    import fsspec

    with s3_server() as endpoint:
        fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint})
        fs.mkdir("exports")
        done = vlamix(
            "export", "lerobot", str(bundled), "--dataset", "ros2_sim", "--to", "s3://exports/v1", "--json"
        )
        assert done.returncode == 0, done.stderr[-2000:]
        local = tmp_path / "local"
        export_one(open_layout(bundled), "ros2_sim", str(local), ExportOptions())
        fs.get("exports/v1/ros2_sim/", str(tmp_path / "got") + "/", recursive=True)
    assert _files(tmp_path / "got") == _files(local / "ros2_sim")
    staged = bundled / WorkDir.EXPORT
    assert not staged.exists() or not list(staged.iterdir())


def test_subtask_index_is_lerobot_04s_form_and_refuses_what_it_cannot_hold(bundled, tmp_path):
    layout = open_layout(bundled)
    export_one(layout, "lerobot_v21_sim", str(tmp_path), ExportOptions(language="subtask-index"))
    root = tmp_path / "lerobot_v21_sim"
    info = json.loads((root / "meta/info.json").read_text())
    assert info["features"]["subtask_index"] == {"dtype": "int64", "shape": [1], "names": None}
    assert "language_persistent" not in info["features"]
    subtasks = pd.read_parquet(root / "meta/subtasks.parquet")
    data = pq.read_table(root / "data/chunk-000/file-000.parquet").to_pylist()
    spans = layout.robot("lerobot_v21_sim").spans["HL"]
    episodes = layout.robot("lerobot_v21_sim").episodes
    for pos, ep in enumerate(episodes):
        rows = [r for r in data if r["episode_index"] == pos]
        for s in spans[ep.episode]:
            for f in (s.start, s.end - 1):
                assert subtasks.index[rows[f]["subtask_index"]] == s.text
    with pytest.raises(ExportError, match="verbal instructions"):
        export_one(layout, "mobile_aloha_sim", str(tmp_path), ExportOptions(language="subtask-index"))


def test_gr00t_with_av1_names_the_modalitys_own_parts(bundled, tmp_path):
    done = vlamix(
        "export",
        "lerobot",
        str(bundled),
        "--dataset",
        "gr00t_sim",
        "--to",
        str(tmp_path),
        "--gr00t",
        "--video-codec",
        "av1",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    root = tmp_path / "gr00t_sim"
    modality = json.loads((root / "meta/modality.json").read_text())
    info = json.loads((root / "meta/info.json").read_text())
    assert modality["state"] == {"single_arm": {"start": 0, "end": 6}, "gripper": {"start": 6, "end": 7}}
    assert all(p["absolute"] for p in modality["action"].values())
    videos = {k for k, f in info["features"].items() if f["dtype"] == "video"}
    assert {v["original_key"] for v in modality["video"].values()} == videos
    assert {f["info"]["video.codec"] for k, f in info["features"].items() if k in videos} == {"av1"}
    assert modality["annotation"] == {"human.task_description": {"original_key": "task_index"}}


def test_openpi_norm_stats_are_the_layouts_exact_statistics(bundled, tmp_path):
    out = tmp_path / "assets" / "norm_stats.json"
    done = vlamix(
        "export", "openpi-norm-stats", str(bundled), "--dataset", "mm_subtasks", "--to", str(out), "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["statistics_of"] == "mobile_aloha_sim"
    ours = json.loads((bundled / "stats/mobile_aloha_sim.json").read_text())
    theirs = json.loads(out.read_text())["norm_stats"]
    assert set(theirs) == {"state", "actions"}
    for key in ("state", "actions"):
        assert set(theirs[key]) == {"mean", "std", "q01", "q99"}
        for stat in ("mean", "std", "q01", "q99"):
            assert theirs[key][stat] == ours[key][stat]
    _, robot = openpi_norm_stats(open_layout(bundled), "widowx_sim")
    assert robot == "widowx_sim"


def test_a_mixture_exports_the_robot_datasets_it_draws_from(bundled, mixdir):
    names = export_datasets(open_layout(bundled), [], mixdir / "pi05_posttrain.yaml")
    kinds = {n: json.loads((bundled / "manifest.json").read_text())["datasets"][n]["kind"] for n in names}
    assert set(kinds.values()) <= {"MM", "ME"} and "mobile_aloha_sim" in names  # post-training: no CE
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "web_coco"], "only robot datasets"),
        (["--dataset", "mm_verbal"], "it annotates 'mobile_aloha_sim'"),
        (["--dataset", "nope"], "no dataset 'nope'"),
        ([], "name a dataset"),
        (["--dataset", "ros2_sim", "--video-codec", "vp9"], "choose one of h264, av1"),
    ],
)
def test_refusals_are_one_line(bundled, tmp_path, capsys, args, message):
    code, err = in_process(capsys, "export", "lerobot", str(bundled), *args, "--to", str(tmp_path / "x"))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_a_published_layout_without_work_is_refused(bundled, tmp_path, capsys):
    published = (
        tmp_path / "published"
    )  # what `vlamix publish` sends: no work/ (its shards do not matter here)
    published.mkdir()
    shutil.copy(bundled / "manifest.json", published / "manifest.json")
    code, err = in_process(
        capsys, "export", "lerobot", str(published), "--dataset", "ros2_sim", "--to", str(tmp_path / "x")
    )
    assert (
        code == 2 and "a published layout keeps only shards" in err and len(err.strip().splitlines()) == 1
    ), err
