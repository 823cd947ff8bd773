"""Trainer: the share of step time spent waiting for data in the tiny config (stage 2, the bundled VLA
with its action expert, 2 dataloader workers, augmentation on: `vlamix train`'s defaults), read from the
run's own metrics.csv after its first steps."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from benchmarks.common import Result
from vlamix.trainer.train import TrainOptions, train

WARMUP = 5  # the first steps start the workers and fill their prefetch queue


def run(layout: Path, folder: Path, steps: int = 45) -> list[Result]:
    mixture = folder / "trainer_bench.yaml"
    mixture.write_text(
        f"name: trainer_bench\nstage: posttrain\nlayouts: [{layout.resolve() / 'manifest.json'}]\n"
        "components: [{dataset: mobile_aloha_sim}]\n"
    )
    out = folder / "trainer_run"
    shutil.rmtree(out, ignore_errors=True)  # a run folder with checkpoints would resume, not train
    opts = TrainOptions(
        "posttrain",
        mixture,
        out,
        steps=steps,
        checkpoint_every=10_000,
        eval_every=10_000,
        eval_batches=0,
        log_every=10_000,
    )
    train(opts, echo=lambda _: None)
    with (out / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f)][WARMUP:]
    wait = sum(float(r["data_wait"]) for r in rows) / len(rows)
    rate = sum(float(r["samples_per_s"]) for r in rows) / len(rows)
    return [
        Result(
            "trainer",
            "share of step time waiting for data",
            "share",
            wait,
            None,
            "",
            ceiling=0.02,
            note=f"tiny config, stage 2, batch 8, 2 workers, augmentation on; {len(rows)} steps after "
            f"{WARMUP} warm-up steps; {rate:.0f} samples/s",
            extra={"samples_per_s": rate},
        )
    ]
