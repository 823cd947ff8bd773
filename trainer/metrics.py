"""What the training loop measures and where it goes: per-sample losses grouped by source, one CSV row
per step (`metrics.csv`), a summary line for the terminal, and TensorBoard scalars when asked for.

metrics.csv columns: step, loss, ce, flow, lr, grad_norm, samples_per_s, data_wait (share of the step
spent waiting for the batch: the slowest rank's), fetched_bytes and cache_hit_rate (the shard cache,
input_costs.py), truncated (prompts or targets cut by the token budget), val_loss, val_ce, val_flow (on
evaluation steps), then `data_wait/rank<r>`, `fetched_bytes/rank<r>`, `cache_hit_rate/rank<r>` per
process, then `ce/<dataset>` (and in stage 2 `flow/<dataset>`) for every training dataset (empty when
the step's batch had none of it). Losses are means over the global batch: the same figures at any
number of processes. A run resumed at another number of processes keeps every rank column either had.

samples.jsonl (with --log-samples): `{"step": s, "keys": [...]}` a line, the global batch's sample keys
in order."""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from vlamix.trainer.data import IGNORE
from vlamix.trainer.input_costs import rank_columns

__all__ = ["BASE_COLUMNS", "MetricsLog", "by_source", "summary", "token_ce"]

BASE_COLUMNS = [
    "step",
    "loss",
    "ce",
    "flow",
    "lr",
    "grad_norm",
    "samples_per_s",
    "data_wait",
    "fetched_bytes",
    "cache_hit_rate",
    "truncated",
    "val_loss",
    "val_ce",
    "val_flow",
]
EVAL_COLUMNS = ["step", "dataset", "ce", "flow"]


def token_ce(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of next-token CE per row [B], supervised tokens per row [B])."""
    ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="none")
    return ce.view(labels.shape).sum(dim=1), (labels != IGNORE).sum(dim=1)


def by_source(names: list[str], sums: torch.Tensor, counts: torch.Tensor) -> dict[str, float]:
    """Token- (or element-) weighted mean per source name, over the rows that have any."""
    total: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for name, s, c in zip(names, sums.tolist(), counts.tolist(), strict=True):
        if c > 0:
            total[name][0] += s
            total[name][1] += c
    return {name: s / c for name, (s, c) in sorted(total.items())}


class MetricsLog:
    """metrics.csv, eval.csv (the held-out loss per dataset: step, dataset, ce, flow) and TensorBoard.
    A resumed run first drops the rows after its checkpoint's step, which a killed run may have
    written, so every step appears once."""

    def __init__(
        self,
        out: Path,
        datasets: list[str],
        flow: bool,
        resume_step: int,
        tensorboard: bool = False,
        processes: int = 1,
        samples: bool = False,
    ):
        self.path = out / "metrics.csv"
        by_dataset = [f"ce/{d}" for d in datasets] + [f"flow/{d}" for d in datasets if flow]
        self.file, self.writer, self.columns = self._open(
            self.path, BASE_COLUMNS + rank_columns(processes) + by_dataset, resume_step
        )
        self.eval_file, self.eval_writer, _ = self._open(out / "eval.csv", EVAL_COLUMNS, resume_step)
        self.samples = _kept_lines(out / "samples.jsonl", resume_step) if samples else None
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ValueError(
                    "--tensorboard needs the tensorboard package: pip install 'vlamix[tensorboard]'"
                ) from e
            self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step + 1)

    @staticmethod
    def _open(path: Path, columns: list[str], resume_step: int):
        """The CSV for appending, holding its header and the rows up to `resume_step`, and its columns.
        The kept rows go to a temp file renamed over the old one, so a kill at any moment loses no row a
        checkpoint covers; a row a kill cut short (fewer fields) is dropped with the rows after the
        checkpoint. Resumed at another number of processes, the rank columns of both are kept (and a
        run from before the input costs gets their columns, empty on its earlier rows)."""
        kept: list[list[str]] = []
        if resume_step > 0 and path.exists():
            with path.open(newline="") as f:
                reader = csv.reader(f)
                old = next(reader, None) or []
                if [c for c in old if not _flexible(c)] != [c for c in columns if not _flexible(c)]:
                    raise ValueError(
                        f"{path}: its columns are another run's (other datasets?); use a new --out"
                    )
                rows = [r for r in reader if len(r) == len(old) and int(r[0]) <= resume_step]
            extra = [c for c in old if c not in columns]
            if extra:  # ranks the earlier run had: after the new rank columns
                at = max(i for i, c in enumerate(columns) if "/rank" in c) + 1
                columns = columns[:at] + extra + columns[at:]
            where = {c: i for i, c in enumerate(old)}
            kept = [[r[where[c]] if c in where else "" for c in columns] for r in rows]
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", newline="") as f:
            csv.writer(f).writerows([columns, *kept])
        os.replace(tmp, path)
        file = path.open("a", newline="")
        return file, csv.writer(file), columns

    def write(self, row: dict) -> None:
        self.writer.writerow(["" if row.get(c) is None else row[c] for c in self.columns])
        self.file.flush()
        if self.tb is not None:
            for name, value in row.items():
                if name != "step" and isinstance(value, int | float):
                    self.tb.add_scalar(name, value, row["step"])

    def write_eval(self, step: int, ce: dict[str, float], flow: dict[str, float]) -> None:
        self.eval_writer.writerows(
            [step, d, f"{v:.5f}", "" if d not in flow else f"{flow[d]:.5f}"] for d, v in ce.items()
        )
        self.eval_file.flush()

    def write_samples(self, step: int, keys: list[str]) -> None:
        assert self.samples is not None
        self.samples.write(json.dumps({"step": step, "keys": keys}) + "\n")
        self.samples.flush()

    def close(self) -> None:
        if self.samples is not None:
            self.samples.close()
        self.file.close()
        self.eval_file.close()
        if self.tb is not None:
            self.tb.close()


def _flexible(column: str) -> bool:
    """Columns a resumed run may lack or add: per-rank ones (another number of processes) and the input
    costs (runs from before they were measured: empty on their rows)."""
    return "/rank" in column or column in ("fetched_bytes", "cache_hit_rate")


def _kept_lines(path: Path, resume_step: int):
    """samples.jsonl for appending, holding the lines of steps up to `resume_step` (as _open does)."""
    kept = []
    if resume_step > 0 and path.exists():
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= resume_step:
                    kept.append(line + "\n")
            except (ValueError, KeyError, TypeError):
                continue  # a line a kill cut short
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)
    return path.open("a")


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def summary(row: dict, kinds: dict[str, str]) -> str:
    """One terminal line: totals, CE (and flow) per source kind (MM, ME, CE, HL, VI, WD), speed."""

    def by_kind(prefix: str) -> str:
        per_kind: dict[str, list[float]] = defaultdict(list)
        for key, value in row.items():
            if key.startswith(prefix) and value is not None:
                per_kind[kinds.get(key[len(prefix) :], "?")].append(value)
        return " ".join(f"{k} {sum(v) / len(v):.3f}" for k, v in sorted(per_kind.items()))

    text = f"step {row['step']}: loss {row['loss']:.4f} (ce {row['ce']:.4f}"
    text += f", flow {row['flow']:.4f})" if row.get("flow") is not None else ")"
    text += f" | ce by kind: {by_kind('ce/')}"
    if row.get("flow") is not None:
        text += f" | flow by kind: {by_kind('flow/')}"
    text += f" | {row['samples_per_s']:.1f} samples/s, data wait {row['data_wait']:.0%}"
    ranks = sorted(k for k in row if k.startswith("data_wait/rank"))
    if len(ranks) > 1:
        text += " (ranks " + "/".join(f"{row[k]:.0%}" for k in ranks) + ")"
    if row.get("cache_hit_rate") is not None:
        text += f", fetched {_bytes(row['fetched_bytes'])}, cache hits {row['cache_hit_rate']:.0%}"
    if row.get("val_loss") is not None:
        text += f" | held-out loss {row['val_loss']:.4f}"
    return text
