"""`vlamix train`: stage 1 (pretrain: next-token CE on the target tokens, no action expert) and stage 2
(posttrain: CE + alpha * flow matching with a fresh action expert), from a mixture of published shards.

    DIR/checkpoints/step_NNNNNN/{model.pt, optimizer.pt, state.json}    (checkpoint.py)
    DIR/metrics.csv                                                     (metrics.py)
    DIR/eval.csv                                                        held-out loss per dataset

The loop trains on the mixture's rows outside the `val` split and measures the held-out loss on the
`val` rows every `eval_every` steps. A run resumes from the newest checkpoint in DIR and continues bit
for bit: batches are numbered and built from the step alone (loader.py), and the flow noise and times
of step s come from a generator seeded by (seed, s).

Before the first step every shard of the mixture is checked against its manifest's size (resolving the
mixture does), and every sample read is checked against its index's crc32 (`read_draw`); a sample that cannot be read ends the
run with an OSError naming its shard, byte range and key (never a skipped sample), after the Store's
retries of transient errors. Re-running the same command then resumes from the last checkpoint."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

from vlamix.mixtures.resolve import Resolved, resolve, split_view
from vlamix.shards.assets import tokenizer_dir
from vlamix.shards.store import Store
from vlamix.tokenizers.tokenizer_set import load_tokenizer_set
from vlamix.trainer.augment import AugmentImages
from vlamix.trainer.checkpoint import (
    latest_checkpoint,
    load_optimizer,
    load_weights,
    read_state,
    remove_partial,
    save_checkpoint,
)
from vlamix.trainer.configs import PRESETS, RunConfig, load_config
from vlamix.trainer.data import Batch
from vlamix.trainer.loader import BatchStream, batches
from vlamix.trainer.metrics import MetricsLog, by_source, summary, token_ce
from vlamix.trainer.model import VLA, flow_errors, sample_time
from vlamix.trainer.seeds import seeded

__all__ = ["ALPHA", "TrainOptions", "is_expert_param", "train"]

ALPHA = 10.0  # weight of the flow loss in stage 2 (pi0.5)
CHECKED = ("batch_size", "seed", "lr", "warmup", "augment", "precision")  # a resume must keep these


@dataclass(frozen=True)
class TrainOptions:
    stage: Literal["pretrain", "posttrain"]
    mixture: Path
    out: Path
    config: str | None = None  # a preset or YAML; default tiny, or the --init checkpoint's
    steps: int = 100
    batch_size: int = 8
    lr: float | None = None  # peak learning rate; default the config's (tiny 3e-3, base 3e-4)
    warmup: int = 10
    seed: int = 0
    init: Path | None = None  # a stage-1 checkpoint folder to start stage 2 from
    checkpoint_every: int = 50
    eval_every: int = 50
    eval_batches: int = 2
    workers: int = 2  # dataloader processes (0: load in the training process)
    augment: bool = True
    log_every: int = 10
    stop_at: int | None = None  # stop (with a checkpoint) after this step: time-limited or preemptible jobs
    tensorboard: bool = False
    device: str | None = None  # cuda, cuda:1, cpu, ...; default cuda when there is one
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast of forward and losses (weights stay fp32)

    def check(self) -> None:
        if self.stage not in ("pretrain", "posttrain"):
            raise ValueError(f"stage {self.stage!r}: stages are pretrain and posttrain")
        for name in ("steps", "batch_size", "checkpoint_every", "eval_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0 or self.eval_batches < 0 or self.warmup < 0:
            raise ValueError("workers, eval_batches and warmup cannot be negative")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision {self.precision!r}: fp32 or bf16")

    def torch_device(self) -> torch.device:
        if self.device is None:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device}: torch sees no CUDA device here (use cpu)")
        return device


def is_expert_param(name: str) -> bool:
    return ".expert." in name or name.startswith(("action_", "time_mlp"))


def _autocast(opts: TrainOptions, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.precision == "bf16")


def _lr(opts: TrainOptions, peak: float, step: int) -> float:
    """Linear warm-up to `peak`, then cosine decay to zero at `steps`."""
    if step < opts.warmup:
        return peak * (step + 1) / opts.warmup
    progress = (step - opts.warmup) / max(1, opts.steps - opts.warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _assets(res: Resolved) -> tuple[int, str, dict[str, str]]:
    """(vocabulary size, tokenizer-set sha256, {dataset: stats sha256}) of the mixture's layouts."""
    (url, manifest), *_ = res.manifests.items()
    tok = load_tokenizer_set(tokenizer_dir(Store(url), manifest))
    stats = {}
    for m in res.manifests.values():
        for name, d in m["datasets"].items():
            if d.get("stats") and any(e.dataset == name for e in res.entries):
                stats[name] = d["stats"]["sha256"]
    return max(r[1] for r in tok.ranges.values() if r), manifest["tokenizer_set"]["sha256"], stats


def losses(model: VLA, batch: Batch, expert: bool, g: torch.Generator) -> dict:
    """CE over target tokens (and, with the expert, flow matching on the robot rows) with per-row sums."""
    noisy = t = noise = None
    if expert:
        dev = batch.actions.device  # drawn on the CPU: the same numbers on any device
        t = sample_time(len(batch.keys), g).to(dev)
        noise = torch.randn(batch.actions.shape, generator=g).to(dev)
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
    out = {"ce": ce_sum.sum() / ce_n.sum().clamp(min=1), "ce_rows": (ce_sum.detach(), ce_n)}
    out["flow"], out["flow_rows"] = None, None
    if expert:
        rows = batch.has_actions
        fl_sum, fl_n = flow_errors(
            velocity, noise - batch.actions, batch.action_is_pad, batch.action_dim_mask
        )
        fl_sum, fl_n = fl_sum * rows, fl_n * rows
        out["flow"] = fl_sum.sum() / fl_n.sum().clamp(min=1)
        out["flow_rows"] = (fl_sum.detach(), fl_n)
    out["loss"] = out["ce"] + ALPHA * out["flow"] if expert else out["ce"]
    return out


@torch.no_grad()
def evaluate(
    model: VLA,
    val: Resolved,
    opts: TrainOptions,
    run: RunConfig,
    expert: bool,
) -> dict:
    """Held-out loss over the first `eval_batches` batches of the val rows: the same draws, noise and
    times at every evaluation, no augmentation."""
    model.eval()
    stream = BatchStream(val, opts.seed, opts.batch_size, 0, run.max_prompt, run.max_targets)
    names, ce_rows, fl_rows = [], [], []
    device = next(model.parameters()).device
    for j, (_, batch) in zip(range(opts.eval_batches), stream, strict=False):
        with _autocast(opts, device):
            out = losses(model, batch.to(device), expert, seeded(opts.seed, "eval", j))
        names += batch.datasets
        ce_rows.append(out["ce_rows"])
        fl_rows.append(out["flow_rows"])
    model.train()
    cat = lambda rows, i: torch.cat([r[i] for r in rows]).double()  # noqa: E731
    mean = lambda rows: (cat(rows, 0).sum() / cat(rows, 1).sum().clamp(min=1)).item()  # noqa: E731
    ce, flow = mean(ce_rows), mean(fl_rows) if expert else None
    return {
        "val_ce": round(ce, 5),
        "val_flow": None if flow is None else round(flow, 5),
        "val_loss": round(ce + ALPHA * flow if expert else ce, 5),
        "ce_by_dataset": by_source(names, cat(ce_rows, 0), cat(ce_rows, 1)),
        "flow_by_dataset": by_source(names, cat(fl_rows, 0), cat(fl_rows, 1)) if expert else {},
    }


def _build(opts: TrainOptions, vocab: int, tok_hash: str, echo) -> tuple[VLA, RunConfig, Path | None, int]:
    """The model (fresh, from --init, or from the newest checkpoint in --out), the checkpoint it resumes
    (or None) and the step to start at."""
    resume = latest_checkpoint(opts.out)
    saved = read_state(resume) if resume else None
    init = read_state(opts.init) if opts.init is not None and saved is None else None
    if opts.config is not None:
        run = load_config(opts.config)
    elif saved or init:
        run = RunConfig(**(saved or init)["config"])
    else:
        run = PRESETS["tiny"]
    for what, st in (("checkpoint", saved), ("--init checkpoint", init)):
        if st is None:
            continue
        where = resume if st is saved else opts.init
        if st["tokenizer_set"] != tok_hash:
            raise ValueError(
                f"{where}: trained with tokenizer set {st['tokenizer_set'][:12]}..., the "
                f"mixture's layouts use {tok_hash[:12]}...: their token ids do not match"
            )
        if RunConfig(**st["config"]) != run:
            raise ValueError(
                f"{where}: this {what} has config {st['config']['name']!r} with other sizes than "
                f"--config {run.name!r}; drop --config to use the checkpoint's"
            )
    torch.manual_seed(opts.seed)
    model = VLA(run.model(vocab), with_expert=opts.stage == "posttrain")
    if saved is not None:
        if saved["stage"] != opts.stage:
            raise ValueError(f"{resume}: a {saved['stage']} run; use another --out for {opts.stage}")
        changed = [k for k in CHECKED if saved["options"].get(k) != _options(opts)[k]]
        if changed:
            raise ValueError(
                f"{opts.out} holds a run with other {', '.join(changed)}: resume it with the "
                "same flags, or train into a new --out"
            )
        model.load_state_dict(load_weights(resume))
        echo(f"resuming {opts.out} from step {saved['step']} ({resume})")
        return model, run, resume, saved["step"]
    if init is not None:
        weights = {k: v for k, v in load_weights(opts.init).items() if not is_expert_param(k)}
        missing = model.load_state_dict(weights, strict=False).missing_keys
        if opts.stage == "posttrain" and not all(is_expert_param(k) for k in missing):
            raise ValueError(f"{opts.init}: backbone weights missing: {missing[:3]}")
        echo(f"{opts.stage}: backbone from {opts.init} (step {init['step']}), a fresh action expert")
    return model, run, None, 0


def _options(opts: TrainOptions) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}


def train(
    opts: TrainOptions,
    progress: Callable[[int, dict], None] | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Train; returns the last metrics row. `progress(step, row)` is called after every step, `echo`
    gets the summary lines."""
    opts.check()
    res = resolve(opts.mixture)
    if res.problems:
        raise ValueError(f"{opts.mixture}: " + "; ".join(res.problems))
    train_rows, val_rows = split_view(res, held_out=False), split_view(res, held_out=True)
    if not train_rows.entries:
        raise ValueError(f"{opts.mixture}: every sample is in the val split; nothing to train on")
    if not val_rows.entries:
        echo("no held-out rows (split 'val') in the mixture's datasets: no held-out loss this run")
    for warning in res.warnings:  # e.g. an older layout whose index has no crc32 per sample
        echo(f"warning: {warning}")
    vocab, tok_hash, stats = _assets(res)
    model, run, resume, step = _build(opts, vocab, tok_hash, echo)
    device = opts.torch_device()
    model.to(device)
    expert = opts.stage == "posttrain"
    peak = opts.lr if opts.lr is not None else run.lr
    optim = torch.optim.AdamW(model.parameters(), lr=peak, weight_decay=0.01)
    if resume is not None:
        optim.load_state_dict(load_optimizer(resume))
    datasets = sorted({e.dataset for e in train_rows.entries})
    state = {
        "stage": opts.stage,
        "config": asdict(run),
        "model": asdict(model.cfg),
        "tokenizer_set": tok_hash,
        "stats": stats,
        "layouts": {url: sorted(e.dataset for e in res.entries if e.layout == url) for url in res.manifests},
        "mixture": str(opts.mixture),
        "init": None if opts.init is None else str(opts.init),
        "options": _options(opts),
    }
    opts.out.mkdir(parents=True, exist_ok=True)
    for p in remove_partial(opts.out):
        echo(f"removed {p}, a checkpoint a stopped run had not finished")
    log = MetricsLog(opts.out, datasets, expert, step, opts.tensorboard)
    kinds = {e.dataset: e.kind for e in res.entries}
    augment = AugmentImages(opts.seed) if opts.augment else None
    stream = BatchStream(
        train_rows, opts.seed, opts.batch_size, step, run.max_prompt, run.max_targets, augment
    )
    it = batches(stream, opts.workers)
    last = min(opts.steps, opts.stop_at) if opts.stop_at is not None else opts.steps
    row: dict = {}
    model.train()
    try:
        while step < last:
            t0 = time.perf_counter()
            k, batch = next(it)
            t1 = time.perf_counter()
            if k != step:
                raise RuntimeError(f"the loader sent batch {k} for step {step}")
            for group in optim.param_groups:
                group["lr"] = _lr(opts, peak, step)
            with _autocast(opts, device):
                out = losses(model, batch.to(device), expert, seeded(opts.seed, "flow", step))
            optim.zero_grad(set_to_none=True)
            out["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            step += 1
            t2 = time.perf_counter()
            row = {
                "step": step,
                "loss": round(out["loss"].item(), 5),
                "ce": round(out["ce"].item(), 5),
                "flow": None if out["flow"] is None else round(out["flow"].item(), 5),
                "lr": float(f"{optim.param_groups[0]['lr']:.6g}"),
                "grad_norm": round(grad_norm.item(), 5),
                "samples_per_s": round(opts.batch_size / (t2 - t0), 2),
                "data_wait": round((t1 - t0) / (t2 - t0), 3),
                "truncated": batch.truncated,
            }
            row |= {f"ce/{d}": round(v, 5) for d, v in by_source(batch.datasets, *out["ce_rows"]).items()}
            if expert:
                row |= {
                    f"flow/{d}": round(v, 5) for d, v in by_source(batch.datasets, *out["flow_rows"]).items()
                }
            if val_rows.entries and opts.eval_batches and (step % opts.eval_every == 0 or step == opts.steps):
                ev = evaluate(model, val_rows, opts, run, expert)
                row |= {k: ev[k] for k in ("val_loss", "val_ce", "val_flow")}
                log.write_eval(step, ev["ce_by_dataset"], ev["flow_by_dataset"])
            log.write(row)
            if progress:
                progress(step, row)
            if step % opts.log_every == 0 or step == last:
                echo(summary(row, kinds))
            if step % opts.checkpoint_every == 0 or step == last:
                save_checkpoint(opts.out, step, model, optim, state)
    finally:
        log.close()
        del it  # stops the dataloader's workers
    return row
