"""`vlamix train`: stage 1 (pretrain: next-token CE on the target tokens, no action expert) and stage 2
(posttrain: CE + alpha * flow matching with a fresh action expert), from a mixture of published shards,
in one process or many (torchrun: DistributedDataParallel, distributed.py).

    DIR/checkpoints/step_NNNNNN/{model.pt, optimizer.pt, state.json}    (checkpoint.py)
    DIR/metrics.csv                                                     (metrics.py)
    DIR/eval.csv                                                        held-out loss per dataset
    DIR/samples.jsonl                                                   with --log-samples: each step's keys

The loop trains on the mixture's rows outside the `val` split and measures the held-out loss on the
`val` rows every `eval_every` steps. Step s trains on global batch s (the sampler's draws s*B .. s*B +
B - 1) whatever the number of processes: each rank builds its B/R rows (loader.py) and the losses are
means over the global batch (objective.py). A run resumes from the newest checkpoint in DIR at any
number of processes and continues the same global sequence of samples: the checkpoint keeps the global
position (step s: draw s*B), and the flow noise and times of step s come from a generator seeded by
(seed, s). Rank 0 writes checkpoints, metrics.csv and TensorBoard; every rank gets rank 0's resume
decision and weights.

Before the first step every shard of the mixture is checked against its manifest's size (resolving the
mixture does); a layout at a URL is read through the shard cache (whole shards, sha256-verified), a
local one in place; every sample read is checked against its index's crc32. A sample that cannot be read
ends the run with an OSError naming its shard and key (never a skipped sample), after the Store's
retries of transient errors. Re-running the same command then resumes from the last checkpoint."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vlamix.mixtures.resolve import Resolved, resolve, split_view
from vlamix.mixtures.sampler import SHARD_BLOCK
from vlamix.shards.assets import tokenizer_dir
from vlamix.shards.store import Store
from vlamix.tokenizers.backbone import BackboneVocab
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
from vlamix.trainer.distributed import World, world_from_env
from vlamix.trainer.input_costs import input_columns
from vlamix.trainer.loader import BatchStream, batches
from vlamix.trainer.metrics import MetricsLog, summary
from vlamix.trainer.model import VLA
from vlamix.trainer.models import BACKBONE_LR, backbone_config, is_backbone, model_from_state
from vlamix.trainer.objective import ALPHA, batch_counts, evaluate, losses, merged_losses, row_sums
from vlamix.trainer.paligemma import PaliGemmaVLA
from vlamix.trainer.sample_source import SampleSource, cache_for
from vlamix.trainer.seeds import seeded

__all__ = ["ALPHA", "TrainOptions", "freeze_unused", "is_expert_param", "losses", "train"]

# a resume keeps these
CHECKED = ("batch_size", "seed", "lr", "warmup", "augment", "precision", "shuffle_block", "expert_width")


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
    cache: Path | None = None  # shard cache folder for layouts at URLs; default ~/.cache/vlamix/shards
    cache_limit: int | None = None  # bytes; least recently used shards go beyond it (None: no limit)
    shuffle_block: int = SHARD_BLOCK  # shards whose rows the sampler shuffles together (0: all)
    log_samples: bool = False  # write each step's global sample keys to samples.jsonl
    backbone: Path | None = None  # a PaliGemma snapshot folder to start from (trainer/models.py)
    expert_width: int | None = None  # with backbone: the expert's width (default half the backbone's)
    checkpointing: bool = False  # gradient checkpointing of the decoder layers (backbone models)

    def check(self) -> None:
        if self.stage not in ("pretrain", "posttrain"):
            raise ValueError(f"stage {self.stage!r}: stages are pretrain and posttrain")
        for name in ("steps", "batch_size", "checkpoint_every", "eval_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0 or self.eval_batches < 0 or self.warmup < 0 or self.shuffle_block < 0:
            raise ValueError("workers, eval_batches, warmup and shuffle_block cannot be negative")
        if self.cache_limit is not None and self.cache_limit < 1:
            raise ValueError(f"cache_limit must be a positive number of bytes, got {self.cache_limit}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision {self.precision!r}: fp32 or bf16")
        if self.expert_width is not None and (self.backbone is None or self.expert_width < 16):
            raise ValueError("--expert-width goes with --backbone, at least 16")


def is_expert_param(name: str) -> bool:
    return ".expert." in name or name.startswith(("action_", "time_mlp"))


def freeze_unused(model: nn.Module, expert: bool) -> None:
    """Stage 1 never uses the expert's weights: DDP must not wait for their gradients (what the model
    froze itself, e.g. SigLIP's pooling head, stays frozen)."""
    if not expert:
        for name, p in model.named_parameters():
            if is_expert_param(name):
                p.requires_grad_(False)


def _autocast(opts: TrainOptions, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.precision == "bf16")


def _lr(opts: TrainOptions, peak: float, step: int) -> float:
    """Linear warm-up to `peak`, then cosine decay to zero at `steps`."""
    if step < opts.warmup:
        return peak * (step + 1) / opts.warmup
    progress = (step - opts.warmup) / max(1, opts.steps - opts.warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass(frozen=True)
class _Assets:
    """What the mixture's layouts fix for the model: vocabulary, tokenizer set, statistics."""

    vocab: int  # ids the embedding holds
    tok_hash: str  # the tokenizer set's sha256
    stats: dict[str, str]  # {dataset: stats sha256}
    target: BackboneVocab | None  # the backbone vocabulary the set targets (None: our own)
    action: int  # the id of <action>


def _assets(res: Resolved) -> _Assets:
    (url, manifest), *_ = res.manifests.items()
    tok = load_tokenizer_set(tokenizer_dir(Store(url), manifest))
    stats = {}
    for m in res.manifests.values():
        for name, d in m["datasets"].items():
            if d.get("stats") and any(e.dataset == name for e in res.entries):
                stats[name] = d["stats"]["sha256"]
    sha = manifest["tokenizer_set"]["sha256"]
    return _Assets(tok.vocab_size, sha, stats, tok.layout.backbone, tok.special("<action>"))


@dataclass
class _Start:
    """Where a run starts, as rank 0 finds it (every other rank receives it: no shared disk needed)."""

    resume: Path | None = None  # the checkpoint folder resumed
    saved: dict | None = None  # its state.json
    init: dict | None = None  # the --init checkpoint's state.json (stage 2 from stage 1)
    weights: dict | None = None
    optimizer: dict | None = None


def _start_point(opts: TrainOptions) -> _Start:
    resume = latest_checkpoint(opts.out)
    if resume is not None:
        return _Start(resume, read_state(resume), None, load_weights(resume), load_optimizer(resume))
    if opts.init is not None:
        return _Start(init=read_state(opts.init), weights=load_weights(opts.init))
    return _Start()


def _model(opts: TrainOptions, run: RunConfig, a: _Assets, start: _Start) -> nn.Module:
    """The architecture: the checkpoint's (resume, --init), a backbone's (--backbone), or the small
    model at the config's sizes; random weights except a fresh backbone's, which are its snapshot's."""
    with_expert = opts.stage == "posttrain"
    st = start.saved or start.init
    where = start.resume or opts.init
    if st is not None and is_backbone(st["model"]):
        if opts.backbone is not None:  # the same vocabulary as the layouts (refused otherwise)
            backbone_config(opts.backbone, a.vocab, a.target, opts.expert_width)
        model = dict(st["model"])
        if start.saved is None and opts.expert_width is not None:  # --init: stage 2's expert is fresh
            model["expert_width"] = opts.expert_width
        return model_from_state(model, with_expert, opts.checkpointing)
    if opts.backbone is not None:
        if st is not None:
            fix = "drop --backbone or --init" if start.saved is None else "train into another --out"
            raise ValueError(f"{where}: a checkpoint of the small model, and --backbone was given: {fix}")
        cfg = backbone_config(opts.backbone, a.vocab, a.target, opts.expert_width)
        return PaliGemmaVLA(cfg, with_expert, pretrained=True, checkpointing=opts.checkpointing)
    if st is None and a.target is not None:
        raise ValueError(
            f"the mixture's layouts carry token ids for a backbone's vocabulary ({a.target.vocab:,}): give "
            "--backbone with that snapshot, or rebuild the layouts without --backbone for the small model"
        )
    return VLA(run.model(a.vocab), with_expert=with_expert)


def _build(opts: TrainOptions, a: _Assets, start: _Start, echo) -> tuple[nn.Module, RunConfig, int]:
    """The model (fresh, from --init, or from the newest checkpoint in --out), its config and the step
    to start at."""
    resume, saved, init = start.resume, start.saved, start.init
    tok_hash = a.tok_hash
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
    model = _model(opts, run, a, start)
    if saved is not None:
        if saved["stage"] != opts.stage:
            raise ValueError(f"{resume}: a {saved['stage']} run; use another --out for {opts.stage}")
        changed = [k for k in CHECKED if saved["options"].get(k, _OLD.get(k)) != _options(opts)[k]]
        if changed:
            raise ValueError(
                f"{opts.out} holds a run with other {', '.join(changed)}: resume it with the "
                "same flags, or train into a new --out"
            )
        assert start.weights is not None
        model.load_state_dict(start.weights)
        world = saved.get("data", {}).get("processes", 1)
        echo(f"resuming {opts.out} from step {saved['step']} ({resume}, saved by {world} process(es))")
        return model, run, saved["step"]
    if init is not None:
        assert start.weights is not None
        weights = {k: v for k, v in start.weights.items() if not is_expert_param(k)}
        missing = model.load_state_dict(weights, strict=False).missing_keys
        if opts.stage == "posttrain" and not all(is_expert_param(k) for k in missing):
            raise ValueError(f"{opts.init}: backbone weights missing: {missing[:3]}")
        echo(f"{opts.stage}: backbone from {opts.init} (step {init['step']}), a fresh action expert")
    return model, run, 0


_OLD = {"shuffle_block": 0, "expert_width": None}  # what a checkpoint from before an option existed ran with


def _options(opts: TrainOptions) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}


def _quiet(_: str) -> None:
    pass


def train(
    opts: TrainOptions,
    progress: Callable[[int, dict], None] | None = None,
    echo: Callable[[str], None] = print,
    world: World | None = None,
) -> dict:
    """Train; returns the last metrics row (on every rank). `progress(step, row)` is called after every
    step, `echo` gets the summary lines (rank 0 only). `world`: default torchrun's environment."""
    opts.check()
    world = world_from_env() if world is None else world
    device = world.device(opts.device)
    world.start(device)
    try:
        return _train(opts, progress if world.main else None, echo if world.main else _quiet, world, device)
    finally:
        world.stop()


def _train(opts: TrainOptions, progress, echo, world: World, device: torch.device) -> dict:
    res = resolve(opts.mixture)
    if res.problems:
        raise ValueError(f"{opts.mixture}: " + "; ".join(res.problems))
    train_rows, val_rows = split_view(res, held_out=False), split_view(res, held_out=True)
    if not train_rows.entries:
        raise ValueError(f"{opts.mixture}: every sample is in the val split; nothing to train on")
    if opts.batch_size % world.size:
        raise ValueError(
            f"--batch-size {opts.batch_size} is the global batch: it must divide evenly over the "
            f"{world.size} processes"
        )
    if not val_rows.entries:
        echo("no held-out rows (split 'val') in the mixture's datasets: no held-out loss this run")
    for warning in res.warnings:  # e.g. an older layout whose index has no crc32 per sample
        echo(f"warning: {warning}")
    assets = world.shared(lambda: _assets(res))  # one fetch of the tokenizer set
    model, run, step = _build(opts, assets, start := world.shared(lambda: _start_point(opts)), echo)
    model.to(device)
    expert = opts.stage == "posttrain"
    freeze_unused(model, expert)
    net = model
    if world.size > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    backbone = isinstance(model, PaliGemmaVLA)
    peak = opts.lr if opts.lr is not None else (BACKBONE_LR if backbone else run.lr)
    optim = torch.optim.AdamW(model.parameters(), lr=peak, weight_decay=0.01)
    if start.optimizer is not None:
        optim.load_state_dict(start.optimizer)
    del start
    datasets = sorted({e.dataset for e in train_rows.entries})
    state = {
        "stage": opts.stage,
        "config": asdict(run),
        "model": asdict(model.cfg),
        "tokenizer_set": assets.tok_hash,
        "stats": assets.stats,
        "layouts": {url: sorted(e.dataset for e in res.entries if e.layout == url) for url in res.manifests},
        "mixture": str(opts.mixture),
        "init": None if opts.init is None else str(opts.init),
        "options": _options(opts),
    }
    log = None
    if world.main:
        opts.out.mkdir(parents=True, exist_ok=True)
        for p in remove_partial(opts.out):
            echo(f"removed {p}, a checkpoint a stopped run had not finished")
        log = MetricsLog(opts.out, datasets, expert, step, opts.tensorboard, world.size, opts.log_samples)
    kinds = {e.dataset: e.kind for e in res.entries}
    source = SampleSource(res.manifests, cache_for(res.manifests, opts.cache, opts.cache_limit))
    common = {"source": source, "rank": world.rank, "world": world.size, "shard_block": opts.shuffle_block}
    common |= {"action": assets.action}
    augment = AugmentImages(opts.seed) if opts.augment else None
    stream = BatchStream(
        train_rows, opts.seed, opts.batch_size, step, run.max_prompt, run.max_targets, augment, **common
    )
    last = min(opts.steps, opts.stop_at) if opts.stop_at is not None else opts.steps
    stream.end = last
    rows = stream.rows[0], opts.batch_size
    it = batches(stream, opts.workers)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.precision == "bf16")
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
            n_ce, n_fl = world.sum(batch_counts(batch, expert), device)
            g = seeded(opts.seed, "flow", step)
            with autocast:
                out = losses(net, batch.to(device), expert, g, rows, (n_ce, n_fl, world.size))
            optim.zero_grad(set_to_none=True)
            out["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            step += 1
            t2 = time.perf_counter()
            mine: dict = row_sums(out, batch.datasets) | {
                "keys": batch.keys if opts.log_samples else [],
                "truncated": batch.truncated,
                "wait": t1 - t0,
                "time": t2 - t0,
                "input": _add(batch.input, source.take_counters()),  # eval's fetches land here
            }
            parts: list[dict] = world.gather({**mine, "step": k})
            if len({p["step"] for p in parts}) != 1:
                raise RuntimeError(f"the processes are at different steps: {[p['step'] for p in parts]}")
            merged = merged_losses(parts, expert)
            row = {
                "step": step,
                "loss": round(merged["loss"], 5),
                "ce": round(merged["ce"], 5),
                "flow": None if merged["flow"] is None else round(merged["flow"], 5),
                "lr": float(f"{optim.param_groups[0]['lr']:.6g}"),
                "grad_norm": round(grad_norm.item(), 5),
                "samples_per_s": round(opts.batch_size / (t2 - t0), 2),
                "truncated": sum(p["truncated"] for p in parts),
            }
            row |= input_columns(parts, source.cache is not None)
            row |= {f"ce/{d}": round(v, 5) for d, v in merged["ce_by"].items()}
            row |= {f"flow/{d}": round(v, 5) for d, v in merged["flow_by"].items()}
            if val_rows.entries and opts.eval_batches and (step % opts.eval_every == 0 or step == opts.steps):
                val = BatchStream(
                    val_rows, opts.seed, opts.batch_size, 0, run.max_prompt, run.max_targets, **common
                )
                val.end = opts.eval_batches
                ev = evaluate(model, val, opts.eval_batches, opts.seed, expert, world.gather, autocast)
                row |= {k: ev[k] for k in ("val_loss", "val_ce", "val_flow")}
                if log is not None:
                    log.write_eval(step, ev["ce_by_dataset"], ev["flow_by_dataset"])
            if log is not None:
                log.write(row)
                if opts.log_samples:
                    log.write_samples(step, [key for p in parts for key in p["keys"]])
            if progress:
                progress(step, row)
            if step % opts.log_every == 0 or step == last:
                echo(summary(row, kinds))
            if world.main and (step % opts.checkpoint_every == 0 or step == last):
                data = {"seed": opts.seed, "batch_size": opts.batch_size, "next_batch": step}
                data |= {"next_draw": step * opts.batch_size, "processes": world.size}
                save_checkpoint(opts.out, step, model, optim, state | {"data": data})
    finally:
        if log is not None:
            log.close()
        del it  # stops the dataloader's workers
        source.close()
    return row


def _add(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + b.get(k, 0) for k in {*a, *b}}
