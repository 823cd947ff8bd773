"""Training in several processes under torchrun (gloo on CPU): --batch-size is the global batch, so
2 processes x 4 rows train on the samples of 1 process x 8 rows, step by step, with the same losses;
a run checkpointed by 2 processes resumes in 1 and continues the same global sequence of samples."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from vlamix.trainer.train import TrainOptions, train

pytestmark = pytest.mark.slow
STEPS = 20
COMMON = [
    "--stage", "pretrain", "--steps", str(STEPS), "--batch-size", "8", "--workers", "0",
    "--eval-batches", "0", "--checkpoint-every", "10", "--log-every", "10", "--log-samples",
]  # fmt: skip


def _mixture(folder: Path, layout: Path) -> Path:
    text = (REPO / "mixtures" / "pi05_pretrain.yaml").read_text()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mix.yaml").write_text(text.replace("../out/manifest.json", str(layout / "manifest.json")))
    return folder / "mix.yaml"


def _torchrun(processes: int, mixture: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    cmd += ["-m", "vlamix", "train", "--mixture", str(mixture), "--out", str(out), *COMMON]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def _metrics(out: Path) -> list[dict]:
    with (out / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def _keys(out: Path) -> dict[int, list[str]]:
    lines = (out / "samples.jsonl").read_text().splitlines()
    return {(r := json.loads(line))["step"]: r["keys"] for line in lines}


@pytest.fixture(scope="module")
def runs(bundled, tmp_path_factory) -> dict[str, Path]:
    """The same 20 steps as 1 process x 8 rows (this process) and 2 processes x 4 rows (torchrun)."""
    root = tmp_path_factory.mktemp("distributed")
    mixture = _mixture(root / "mix", bundled)
    one = root / "one"
    opts = TrainOptions(
        "pretrain", mixture, one, steps=STEPS, batch_size=8, workers=0, eval_batches=0,
        checkpoint_every=10, log_samples=True,
    )  # fmt: skip
    train(opts, echo=lambda _: None)  # no torchrun: world 1
    two = root / "two"
    run = _torchrun(2, mixture, two)
    assert "rank 1" not in run.stderr
    return {"one": one, "two": two, "mixture": mixture}


def test_two_processes_train_on_the_global_batch_of_one(runs):
    one, two = _metrics(runs["one"]), _metrics(runs["two"])
    assert [r["step"] for r in two] == [str(s) for s in range(1, STEPS + 1)]
    keys = _keys(runs["two"])
    assert len(keys) == STEPS and all(len(k) == 8 for k in keys.values())
    assert _keys(runs["one"]) == keys  # the same samples in every global step
    for a, b in zip(one, two, strict=True):  # losses agree within float tolerance (summation order)
        for col in ("loss", "ce", "grad_norm"):
            assert float(a[col]) == pytest.approx(float(b[col]), rel=2e-3, abs=2e-3), (a["step"], col)
    assert {"data_wait/rank0", "data_wait/rank1", "fetched_bytes/rank1"} <= set(two[0])
    assert all(r["data_wait/rank1"] != "" for r in two)
    state = json.loads((runs["two"] / "checkpoints" / "step_000020" / "state.json").read_text())
    assert state["data"] == {
        "seed": 0, "batch_size": 8, "next_batch": 20, "next_draw": 160, "processes": 2,
    }  # fmt: skip


def test_a_two_process_checkpoint_resumes_in_one_process_on_the_same_samples(runs, tmp_path):
    # what 2 processes left at step 10 (the uninterrupted run's checkpoint; later files are a killed
    # run's leftovers, which the resume drops)
    resumed = tmp_path / "resumed"
    shutil.copytree(runs["two"], resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_000020")
    state = json.loads((resumed / "checkpoints" / "step_000010" / "state.json").read_text())
    assert state["data"]["processes"] == 2
    lines: list[str] = []
    opts = TrainOptions(
        "pretrain", runs["mixture"], resumed, steps=STEPS, batch_size=8, workers=0, eval_batches=0,
        checkpoint_every=10, log_every=10, log_samples=True,
    )  # fmt: skip
    train(opts, echo=lines.append)
    assert any("from step 10" in line and "2 process" in line for line in lines)
    keys, uninterrupted = _keys(resumed), _keys(runs["two"])
    assert sorted(keys) == list(range(1, STEPS + 1))
    assert {s: keys[s] for s in range(11, 21)} == {s: uninterrupted[s] for s in range(11, 21)}
    after, before = _metrics(resumed), _metrics(runs["two"])
    for a, b in zip(after[10:], before[10:], strict=True):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=2e-3, abs=2e-3)
    # the rank-1 column of the 2-process steps stays, empty on the 1-process steps
    assert after[0]["data_wait/rank1"] != "" and after[-1]["data_wait/rank1"] == ""


def test_a_failure_on_one_rank_stops_every_rank_with_one_line(runs, bundled, tmp_path):
    """A sample only rank 1 reads at step 3 is damaged (its crc32 no longer matches): rank 1 says so in
    one `error:` line tagged with its rank, torchrun stops rank 0, and only steps 1-2 were written."""
    keys = _keys(runs["one"])
    rank0 = {k for s in (1, 2, 3) for k in keys[s][:4]} | {k for s in (1, 2) for k in keys[s][4:]}
    victim = next(k for k in keys[3][4:] if k not in rank0)
    dataset = victim.split("/", 1)[0]
    index = json.loads((bundled / "manifest.json").read_text())["datasets"][dataset]["index"]["path"]
    import pyarrow.parquet as pq

    row = next(r for r in pq.read_table(bundled / index).to_pylist() if r["key"] == victim)
    layout = tmp_path / "out"
    for path in bundled.rglob("*"):
        rel = path.relative_to(bundled)
        if path.is_file() and rel.parts[0] != "work":
            (layout / rel).parent.mkdir(parents=True, exist_ok=True)
            (layout / rel).symlink_to(path)
    shard = layout / row["shard"]
    shard.unlink()
    shutil.copyfile(bundled / row["shard"], shard)
    with shard.open("r+b") as f:  # a byte inside the sample's first member (size and headers intact)
        f.seek(row["offset"] + 512 + 16)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    mixture = _mixture(tmp_path / "mix", layout)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "vlamix",
    ]
    cmd += ["train", "--mixture", str(mixture), "--out", str(tmp_path / "run"), *COMMON]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode != 0
    errors = re.findall(r"error: .*", done.stderr)  # a progress bar may share rank 0's line
    assert len(errors) == 1, done.stderr[-3000:]
    assert errors[0].startswith("error: rank 1: ") and victim in errors[0] and "crc32" in errors[0]
    assert [r["step"] for r in _metrics(tmp_path / "run")] == ["1", "2"]
