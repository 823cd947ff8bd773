"""`vlamix train`: stage 1 (pretrain: next-token CE on the target tokens, no action expert) and stage 2
(posttrain: CE + alpha * flow matching with a fresh action expert), from a mixture of published shards.

    DIR/checkpoints/step_NNNNNN/{model.pt, optimizer.pt, state.json}   state: step, sampler, config, hashes
    DIR/metrics.csv                                                     step,loss,ce,flow,samples_per_s,data_wait

A run resumes from the newest checkpoint in DIR: model, optimizer, schedule, sampler and step."""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from vlamix.mixtures.resolve import resolve
from vlamix.mixtures.sampler import MixtureSampler
from vlamix.shards.assets import tokenizer_dir
from vlamix.shards.store import Store
from vlamix.tokenizers.tokenizer_set import load_tokenizer_set
from vlamix.trainer.data import IGNORE, collate
from vlamix.trainer.model import VLA, ModelConfig, flow_loss, sample_time

__all__ = ["CONFIGS", "TrainOptions", "train"]

ALPHA = 10.0  # weight of the flow loss in stage 2 (pi0.5)
CONFIGS = {  # model sizes; vocab_size comes from the layouts' tokenizer set
    "tiny": {
        "width": 64,
        "depth": 2,
        "heads": 4,
        "expert_width": 32,
        "vit_width": 32,
        "vit_depth": 1,
        "patch": 56,
    },
    "base": {
        "width": 512,
        "depth": 8,
        "heads": 8,
        "expert_width": 256,
        "vit_width": 384,
        "vit_depth": 6,
        "patch": 16,
    },
}


@dataclass(frozen=True)
class TrainOptions:
    stage: Literal["pretrain", "posttrain"]
    mixture: Path
    out: Path
    config: str = "tiny"
    steps: int = 100
    batch_size: int = 8
    lr: float = 3e-4
    warmup: int = 10
    seed: int = 0
    init: Path | None = None  # a stage-1 checkpoint folder to start stage 2 from
    checkpoint_every: int = 50
    max_prompt: int = 96
    max_targets: int = 96
    stop_at: int | None = None  # stop (with a checkpoint) after this step: time-limited or preemptible jobs


def _vocab(res) -> tuple[int, str]:
    (url, manifest), *_ = res.manifests.items()
    tok = load_tokenizer_set(tokenizer_dir(Store(url), manifest))
    return max(r[1] for r in tok.ranges.values() if r), manifest["tokenizer_set"]["sha256"]


def _lr(opts: TrainOptions, step: int) -> float:
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    progress = (step - opts.warmup) / max(1, opts.steps - opts.warmup)
    return opts.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _latest(out: Path) -> Path | None:
    found = sorted((out / "checkpoints").glob("step_*"))
    return found[-1] if found else None


def _save(out: Path, step: int, model, optim, sampler, state: dict) -> Path:
    folder = out / "checkpoints" / f"step_{step:06d}"
    tmp = folder.with_name(f".{folder.name}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), tmp / "model.pt")
    torch.save(optim.state_dict(), tmp / "optimizer.pt")
    torch.save(torch.get_rng_state(), tmp / "rng.pt")  # flow noise and times continue exactly on resume
    (tmp / "state.json").write_text(
        json.dumps({**state, "step": step, "sampler": sampler.state_dict()}, indent=2)
    )
    tmp.rename(folder)  # a checkpoint folder exists whole or not at all
    return folder


def train(opts: TrainOptions, progress=None) -> dict:
    """Train; returns the last metrics row. `progress(step, row)` is called after every step."""
    torch.manual_seed(opts.seed)
    res = resolve(opts.mixture)
    if res.problems:
        raise ValueError(f"{opts.mixture}: " + "; ".join(res.problems))
    vocab, tok_hash = _vocab(res)
    cfg = ModelConfig(vocab_size=vocab, **CONFIGS[opts.config])
    expert = opts.stage == "posttrain"
    model = VLA(cfg, with_expert=expert)
    sampler = MixtureSampler(res, seed=opts.seed)
    optim = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=0.01)
    state = {
        "stage": opts.stage,
        "config": asdict(cfg),
        "tokenizer_set": tok_hash,
        "mixture": str(opts.mixture),
    }
    step = 0
    resume = _latest(opts.out)
    if resume is not None:
        saved = json.loads((resume / "state.json").read_text())
        if saved["tokenizer_set"] != tok_hash or saved["stage"] != opts.stage:
            raise ValueError(f"{resume}: a checkpoint of another run (stage or tokenizer set differ)")
        model.load_state_dict(torch.load(resume / "model.pt"))
        optim.load_state_dict(torch.load(resume / "optimizer.pt"))
        sampler.load_state_dict(saved["sampler"])
        torch.set_rng_state(torch.load(resume / "rng.pt"))
        step = saved["step"]
    elif opts.init is not None:
        init_state = json.loads((opts.init / "state.json").read_text())
        if init_state["tokenizer_set"] != tok_hash:
            raise ValueError(f"{opts.init}: trained with another tokenizer set than the mixture's layouts")
        weights = torch.load(opts.init / "model.pt")
        backbone = {
            k: v for k, v in weights.items() if not (".expert." in k or k.startswith(("action_", "time_mlp")))
        }
        missing = model.load_state_dict(backbone, strict=False).missing_keys
        assert all(
            ".expert." in k or k.startswith(("action_", "time_mlp")) for k in missing
        )  # a fresh expert
    opts.out.mkdir(parents=True, exist_ok=True)
    metrics = opts.out / "metrics.csv"
    new_file = not metrics.exists() or step == 0
    with metrics.open("w" if new_file else "a", newline="") as f:
        writer = csv.writer(f)
        if new_file:
            writer.writerow(["step", "loss", "ce", "flow", "samples_per_s", "data_wait"])
        row: dict = {}
        model.train()
        last = min(opts.steps, opts.stop_at) if opts.stop_at is not None else opts.steps
        while step < last:
            t0 = time.perf_counter()
            batch = collate(sampler.take(opts.batch_size), opts.max_prompt, opts.max_targets)
            t1 = time.perf_counter()
            for group in optim.param_groups:
                group["lr"] = _lr(opts, step)
            noisy = t = noise = None
            if expert:
                t = sample_time(opts.batch_size)
                noise = torch.randn_like(batch.actions)
                noisy = t[:, None, None] * noise + (1 - t[:, None, None]) * batch.actions
            logits, velocity = model(
                batch.images,
                batch.image_mask,
                batch.prompt_ids,
                batch.prompt_valid,
                batch.target_ids,
                noisy,
                t,
            )
            ce = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE)
            fl = torch.zeros(())
            if expert and batch.has_actions.any():
                rows = batch.has_actions
                fl = flow_loss(
                    velocity[rows],
                    (noise - batch.actions)[rows],
                    batch.action_is_pad[rows],
                    batch.action_dim_mask[rows],
                )
            loss = ce + ALPHA * fl if expert else ce
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            step += 1
            t2 = time.perf_counter()
            row = {
                "step": step,
                "loss": round(loss.item(), 5),
                "ce": round(ce.item(), 5),
                "flow": round(fl.item(), 5),
                "samples_per_s": round(opts.batch_size / (t2 - t0), 2),
                "data_wait": round((t1 - t0) / (t2 - t0), 3),
            }
            writer.writerow(row.values())
            f.flush()
            if progress:
                progress(step, row)
            if step % opts.checkpoint_every == 0 or step == last:
                _save(opts.out, step, model, optim, sampler, state)
    return row
