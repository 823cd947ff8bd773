"""What the trainer minimises and measures: stage 1's next-token CE, stage 2's CE + ALPHA * flow matching,
and the held-out loss, for one process's rows of a global batch.

A global batch of B rows may be split over R processes. Every loss is a mean over the global batch's
supervised tokens (and flow elements): each process divides its own sums by the global counts and
multiplies by R, so DistributedDataParallel's average of the gradients is the gradient of the global
mean, and 2 processes x 4 rows train like 1 process x 8 rows. The flow noise and times are drawn for
the whole global batch and sliced, for the same reason."""

from __future__ import annotations

import torch

from vlamix.trainer.data import IGNORE, Batch
from vlamix.trainer.loader import BatchStream
from vlamix.trainer.metrics import by_source, token_ce
from vlamix.trainer.model import VLA, flow_errors, sample_time
from vlamix.trainer.seeds import seeded

__all__ = ["ALPHA", "Norm", "batch_counts", "evaluate", "losses", "merged_losses"]

ALPHA = 10.0  # weight of the flow loss in stage 2 (pi0.5)

Norm = tuple[float, float, int]  # (supervised tokens, flow elements) of the global batch, processes


def batch_counts(batch: Batch, expert: bool) -> list[float]:
    """[supervised target tokens, flow elements of the robot rows] of this process' rows."""
    n_ce = float((batch.labels != IGNORE).sum())
    if not expert:
        return [n_ce, 0.0]
    keep = (~batch.action_is_pad)[:, :, None] & batch.action_dim_mask[:, None, :]
    return [n_ce, float((keep.flatten(1).sum(1) * batch.has_actions).sum())]


def losses(
    model,
    batch: Batch,
    expert: bool,
    g: torch.Generator,
    rows: tuple[int, int] | None = None,
    norm: Norm | None = None,
) -> dict:
    """CE over target tokens (and, with the expert, flow matching on the robot rows) with per-row sums.
    `rows`: (first row, global rows) of this part of a global batch (default: the whole batch); `norm`:
    the global counts and the number of processes (default: this batch's own, one process)."""
    b = len(batch.keys)
    first, total = rows if rows is not None else (0, b)
    noisy = t = noise = None
    if expert:
        dev = batch.actions.device  # drawn on the CPU: the same numbers on any device
        t = sample_time(total, g)[first : first + b].to(dev)
        shape = (total, *batch.actions.shape[1:])
        noise = torch.randn(shape, generator=g)[first : first + b].to(dev)
        noisy = t[:, None, None] * noise + (1 - t[:, None, None]) * batch.actions
    logits, velocity = model(
        batch.images,
        batch.image_mask,
        batch.prompt_ids,
        batch.prompt_valid,
        batch.target_ids,
        noisy,
        t,
        batch.expert_context,
    )
    ce_sum, ce_n = token_ce(logits, batch.labels)
    n_ce, n_fl, processes = norm if norm is not None else (*batch_counts(batch, expert), 1)
    out = {"ce": ce_sum.sum() / max(n_ce, 1.0), "ce_rows": (ce_sum.detach(), ce_n)}
    out["flow"], out["flow_rows"] = None, None
    if expert:
        has = batch.has_actions
        fl_sum, fl_n = flow_errors(
            velocity, noise - batch.actions, batch.action_is_pad, batch.action_dim_mask
        )
        fl_sum, fl_n = fl_sum * has, fl_n * has
        out["flow"] = fl_sum.sum() / max(n_fl, 1.0)
        out["flow_rows"] = (fl_sum.detach(), fl_n)
    loss = out["ce"] + ALPHA * out["flow"] if expert else out["ce"]
    out["loss"] = loss * processes if processes > 1 else loss
    return out


def row_sums(out: dict, names: list[str]) -> dict:
    """This process' per-row sums as plain lists (what the ranks gather every step)."""
    ce_s, ce_n = out["ce_rows"]
    part = {"names": names, "ce_s": ce_s.double().tolist(), "ce_n": ce_n.double().tolist()}
    if out["flow_rows"] is not None:
        fl_s, fl_n = out["flow_rows"]
        part |= {"fl_s": fl_s.double().tolist(), "fl_n": fl_n.double().tolist()}
    return part


def merged_losses(parts: list[dict], expert: bool) -> dict:
    """The global batch's losses from every process' row sums: totals and per dataset."""
    names = [n for p in parts for n in p["names"]]
    cat = lambda k: torch.tensor([v for p in parts for v in p[k]], dtype=torch.float64)  # noqa: E731
    ce_s, ce_n = cat("ce_s"), cat("ce_n")
    ce = (ce_s.sum() / ce_n.sum().clamp(min=1)).item()
    out = {"ce": ce, "flow": None, "loss": ce, "ce_by": by_source(names, ce_s, ce_n), "flow_by": {}}
    if expert:
        fl_s, fl_n = cat("fl_s"), cat("fl_n")
        out["flow"] = (fl_s.sum() / fl_n.sum().clamp(min=1)).item()
        out["loss"] = ce + ALPHA * out["flow"]
        out["flow_by"] = by_source(names, fl_s, fl_n)
    return out


@torch.no_grad()
def evaluate(
    model: VLA, stream: BatchStream, batches: int, seed: int, expert: bool, gather, autocast
) -> dict:
    """Held-out loss over the first `batches` global batches of the val rows (this process builds its
    rows of each; `gather` collects every process' sums): the same draws, noise and times at every
    evaluation, no augmentation."""
    model.eval()
    device = next(model.parameters()).device
    rows = (stream.rows[0], stream.batch_size)
    parts = []
    for j, (_, batch) in zip(range(batches), stream, strict=False):
        with autocast:
            out = losses(model, batch.to(device), expert, seeded(seed, "eval", j), rows)
        parts.append(row_sums(out, batch.datasets))
    model.train()
    merged = merged_losses([p for rank in gather(parts) for p in rank], expert)
    return {
        "val_ce": round(merged["ce"], 5),
        "val_flow": None if merged["flow"] is None else round(merged["flow"], 5),
        "val_loss": round(merged["loss"], 5),
        "ce_by_dataset": merged["ce_by"],
        "flow_by_dataset": merged["flow_by"],
    }
