"""Both training stages on the bundled layout with the tiny config: stage 1 learns, a killed-and-resumed
run equals an uninterrupted one, stage 2 starts from stage 1 with a fresh expert and trains the flow."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from vlamix.trainer.train import TrainOptions, train

pytestmark = pytest.mark.slow


def _rows(out) -> list[dict]:
    with (out / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_stage1_learns_resumes_exactly_and_stage2_starts_from_it(mixdir, tmp_path):
    mix = mixdir / "pi05_pretrain.yaml"
    whole = TrainOptions(
        "pretrain", mix, tmp_path / "whole", steps=40, batch_size=4, lr=5e-3, warmup=2, checkpoint_every=20
    )
    train(whole)
    rows = _rows(tmp_path / "whole")
    assert [int(r["step"]) for r in rows] == list(range(1, 41))
    first = sum(float(r["ce"]) for r in rows[:4]) / 4
    last = sum(float(r["ce"]) for r in rows[-8:]) / 8
    assert last < first - 1.0, (first, last)  # it learns (CE on text + FAST targets, in nats)
    assert {p.name for p in (tmp_path / "whole" / "checkpoints").iterdir()} == {"step_000020", "step_000040"}
    state = json.loads((tmp_path / "whole" / "checkpoints" / "step_000040" / "state.json").read_text())
    assert (
        state["stage"] == "pretrain" and len(state["tokenizer_set"]) == 64 and state["sampler"]["next"] == 160
    )

    # interrupted after 20 steps, then resumed: the same losses as the run that never stopped
    part = tmp_path / "part"
    train(TrainOptions("pretrain", mix, part, steps=40, batch_size=4, lr=5e-3, warmup=2, stop_at=20))
    train(
        TrainOptions("pretrain", mix, part, steps=40, batch_size=4, lr=5e-3, warmup=2, checkpoint_every=100)
    )
    assert [r["loss"] for r in _rows(part)] == [r["loss"] for r in rows]

    post = TrainOptions(
        "posttrain",
        mixdir / "pi05_posttrain.yaml",
        tmp_path / "post",
        steps=6,
        batch_size=4,
        init=tmp_path / "whole" / "checkpoints" / "step_000040",
        checkpoint_every=6,
    )
    row = train(post)
    flows = [float(r["flow"]) for r in _rows(tmp_path / "post")]
    assert any(f > 0 for f in flows) and all(torch.isfinite(torch.tensor(f)) for f in flows)
    assert row["step"] == 6
    losses = _rows(tmp_path / "post")
    assert all(
        float(r["loss"]) == pytest.approx(float(r["ce"]) + 10 * float(r["flow"]), abs=1e-3) for r in losses
    )
