"""Both training stages on the bundled layout with the tiny config: the shards are read over HTTP from a
server on 127.0.0.1, stage 1 and stage 2 learn over a few hundred steps, and a run stopped (or killed)
and resumed with two dataloader workers is bitwise equal to the one that never stopped."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO
from servers import http_server

from vlamix.trainer.train import TrainOptions, train

pytestmark = pytest.mark.slow
REPO_MIXTURES = ("pi05_pretrain.yaml", "pi05_posttrain.yaml")


def _rows(out) -> list[dict]:
    with (out / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def _mean(rows: list[dict], key: str) -> float:
    values = [float(r[key]) for r in rows if r[key] != ""]
    return sum(values) / len(values)


@pytest.fixture(scope="module")
def served(bundled, tmp_path_factory):
    """The shipped mixtures pointing at the bundled layout served over HTTP (Range requests honoured)."""
    with http_server(bundled.parent) as url:
        folder = tmp_path_factory.mktemp("http_mixtures")
        for name in REPO_MIXTURES:
            text = (REPO / "mixtures" / name).read_text()
            (folder / name).write_text(
                text.replace("../out/manifest.json", f"{url}/{bundled.name}/manifest.json")
            )
        yield folder, url


# nightly: 400 training steps. `make test` trains over HTTP (tests/reliability/test_faults.py), both stages'
# losses run in test_resume_with_two_workers_is_bitwise_equal and test_faults.py, and learning, with the
# images used, is held by tests/trainer/test_overfit_predict.py.
@pytest.mark.nightly
def test_both_stages_learn_from_shards_served_over_http(served, tmp_path, capsys):
    mixtures, url = served
    common = {"batch_size": 8, "warmup": 10, "checkpoint_every": 100, "log_every": 50}  # tiny: peak lr 3e-3
    s1 = TrainOptions(
        "pretrain", mixtures / "pi05_pretrain.yaml", tmp_path / "s1", steps=200, eval_every=100, **common
    )
    train(s1)
    rows = _rows(tmp_path / "s1")
    assert [int(r["step"]) for r in rows] == list(range(1, 201))
    first, last = _mean(rows[:10], "ce"), _mean(rows[-20:], "ce")
    assert last < first - 2.5, (first, last)  # next-token CE on subtasks, answers, captions, FAST
    # the held-out loss (val split: the CE datasets' own TFDS val episodes) is measured and falls
    val = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    assert len(val) == 2 and val[1] < val[0] < first, val
    evals = (tmp_path / "s1" / "eval.csv").read_text().splitlines()
    assert {line.split(",")[1] for line in evals[1:]} == {"arm6_sim", "widowx_sim"}
    # every training dataset has its own loss column, filled on the steps its samples were drawn
    per_dataset = [c for c in rows[0] if c.startswith("ce/")]
    assert {c[3:] for c in per_dataset} >= {"mobile_aloha_sim", "mm_subtasks", "web_coco", "widowx_sim"}
    assert all(any(r[c] for r in rows) for c in per_dataset)
    assert not any(c.startswith("flow/") for c in rows[0])  # stage 1 has no flow loss
    state = json.loads((tmp_path / "s1" / "checkpoints" / "step_000200" / "state.json").read_text())
    assert state["stage"] == "pretrain" and state["config"]["name"] == "tiny"
    assert list(state["layouts"]) == [f"{url}/out"] and len(state["tokenizer_set"]) == 64
    assert set(state["stats"]) == {
        "arm6_sim",
        "lerobot_v21_sim",
        "lerobot_v30_sim",
        "me_subtasks",
        "mm_subtasks",
        "mobile_aloha_sim",
        "widowx_sim",
    }  # every robot dataset read (HL samples are normalized with their own statistics too)
    assert all(len(h) == 64 for h in state["stats"].values())
    assert "ce by kind" in capsys.readouterr().out

    s2 = TrainOptions(
        "posttrain",
        mixtures / "pi05_posttrain.yaml",
        tmp_path / "s2",
        steps=200,
        init=tmp_path / "s1" / "checkpoints" / "step_000200",
        **common,
    )
    train(s2)
    rows2 = _rows(tmp_path / "s2")
    f_first, f_last = _mean(rows2[:10], "flow"), _mean(rows2[-20:], "flow")
    assert f_last < 0.6 * f_first, (f_first, f_last)  # the fresh expert learns the flow
    assert _mean(rows2[:10], "ce") < first - 2.0  # the backbone came from stage 1, not from scratch
    assert all(abs(float(r["loss"]) - float(r["ce"]) - 10 * float(r["flow"])) < 1e-3 for r in rows2)
    assert {c[5:] for c in rows2[0] if c.startswith("flow/")} == {
        "lerobot_v21_sim",
        "lerobot_v30_sim",
        "me_subtasks",
        "mm_subtasks",
        "mm_verbal",
        "mobile_aloha_sim",
        "web_coco",
        "web_parquet",
    }
    assert all(r["flow/web_coco"] == "" for r in rows2)  # web samples have no actions: no flow loss
    print(f"\nstage 1 CE {first:.2f} -> {last:.2f}; stage 2 flow {f_first:.3f} -> {f_last:.3f}")


def _weights(folder) -> dict:
    return torch.load(folder / "model.pt", weights_only=True)


def test_resume_with_two_workers_is_bitwise_equal(mixdir, tmp_path):
    """Stage 2 (flow noise, times, augmentation, the expert) with two dataloader workers: a run stopped
    at step 8, with a killed run's leftovers after it, resumes to exactly the uninterrupted run."""
    mix = mixdir / "pi05_posttrain.yaml"
    kw = {"steps": 16, "batch_size": 4, "lr": 3e-3, "warmup": 2, "workers": 2, "checkpoint_every": 100}
    train(TrainOptions("posttrain", mix, tmp_path / "whole", tensorboard=True, **kw))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "whole" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("flow")] == list(range(1, 17))  # the CSV's numbers, as scalars
    part = tmp_path / "part"
    train(TrainOptions("posttrain", mix, part, stop_at=8, **kw))
    assert [p.name for p in (part / "checkpoints").iterdir()] == ["step_000008"]
    with (part / "metrics.csv").open("a") as f:  # what a run killed at step 11 leaves behind
        f.write("9,1.0,1.0,0.0\n10,1.0,1.0,0.0\n11,1.0,1.0,0.0\n")
    (part / "checkpoints" / ".step_000010.tmp").mkdir()
    train(TrainOptions("posttrain", mix, part, **kw))

    timing = ("samples_per_s", "data_wait")  # data_wait/rank0 too
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith(timing)} for r in rows]  # noqa: E731
    assert strip(_rows(part)) == strip(_rows(tmp_path / "whole"))
    a, b = (
        _weights(tmp_path / "whole" / "checkpoints" / "step_000016"),
        _weights(part / "checkpoints" / "step_000016"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    oa = torch.load(tmp_path / "whole" / "checkpoints" / "step_000016" / "optimizer.pt", weights_only=True)
    ob = torch.load(part / "checkpoints" / "step_000016" / "optimizer.pt", weights_only=True)
    assert all(torch.equal(oa["state"][i]["exp_avg_sq"], ob["state"][i]["exp_avg_sq"]) for i in oa["state"])

    # the batches depend on the step only: loading in this process (no workers) gives the same run
    train(TrainOptions("posttrain", mix, tmp_path / "inline", **{**kw, "workers": 0}))
    assert strip(_rows(tmp_path / "inline")) == strip(_rows(tmp_path / "whole"))

    # a resume with other numbers is refused, naming them
    with pytest.raises(ValueError, match="batch_size"):
        train(TrainOptions("posttrain", mix, part, **{**kw, "batch_size": 2, "steps": 20}))


def test_train_cli_errors_are_one_line(mixdir, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "vlamix.cli", "train", "--mixture", str(mixdir / "pi05_pretrain.yaml")]
        return subprocess.run([*cmd, "--out", str(tmp_path / "r"), *args], capture_output=True, text=True)

    bad_stage = run("--stage", "finetune")
    assert bad_stage.returncode == 2 and "stages are pretrain and posttrain" in bad_stage.stderr
    bad_config = run("--stage", "pretrain", "--config", "huge")
    assert bad_config.returncode == 2 and "give a preset (tiny, base)" in bad_config.stderr
    not_ckpt = run("--stage", "posttrain", "--init", str(tmp_path))
    assert not_ckpt.returncode == 2 and "not a checkpoint folder" in not_ckpt.stderr
    assert "Traceback" not in bad_stage.stderr + bad_config.stderr + not_ckpt.stderr
