"""The model can learn what the shards hold, and `vlamix predict` gives it back in native units.

Four real samples (two HL samples with subtask text, two plain MM frames) all get the SAME prompt, so
only their camera images tell them apart. The tiny model overfits them with the stage-2 loss: the flow
loss goes near zero, sampled chunks land near their targets, and shuffling the images among the samples
brings the loss back up (the model reads the images). The overfitted checkpoint then goes through the
real CLI on sample 0's own images, native state and task: the prompt it builds is the shard's, the
subtask it decodes is the sample's, the flow chunk and the FAST chunk are the sample's chunk in native
units, and an untrained checkpoint's FAST tokens are reported as invalid (exit 3), never zeroed."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import asdict, replace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from vlamix.mixtures.sampler import Draw
from vlamix.schemas.embodiment import CAMERA_SLOTS
from vlamix.shards.assets import embodiment_of
from vlamix.shards.random_access import read_sample
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir
from vlamix.tokenizers.tokenizer_set import load_tokenizer_set
from vlamix.trainer.checkpoint import save_checkpoint
from vlamix.trainer.configs import PRESETS
from vlamix.trainer.data import collate
from vlamix.trainer.model import VLA, sample_actions
from vlamix.trainer.train import losses
from vlamix.transforms.chain import build_chain
from vlamix.transforms.native import native_chunk
from vlamix.transforms.stats import DimStats

pytestmark = pytest.mark.slow
PICKS = [
    ("mm_subtasks", 1, 300),
    ("mm_subtasks", 2, 150),
    ("mobile_aloha_sim", 0, 420),
    ("mobile_aloha_sim", 2, 60),
]


def _draw(layout, dataset: str, episode: int, frame: int) -> Draw:
    rows = pq.read_table(layout / "index" / f"{dataset}.parquet").to_pylist()
    r = min((r for r in rows if r["episode"] == episode), key=lambda r: abs(r["frame"] - frame))
    return Draw(0, dataset, dataset, str(layout), r["key"], r["shard"], r["offset"], r["length"], 0)


def _gen(j: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 + j)


def _flow(model, batch) -> float:
    model.eval()
    with torch.no_grad():
        value = float(np.mean([losses(model, batch, True, _gen(j))["flow"].item() for j in range(8)]))
    model.train()
    return value


def learn(model, batch, steps: int) -> torch.optim.Optimizer:
    """Train `model` on the one `batch` with the stage-2 loss (AdamW, peak lr 3e-3, cosine decay);
    returns the optimizer."""
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for step in range(steps):
        for group in optim.param_groups:
            group["lr"] = 3e-3 * 0.5 * (1 + np.cos(np.pi * step / steps))
        out = losses(model, batch, True, torch.Generator().manual_seed(step))
        optim.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
    return optim


@pytest.fixture(scope="module")
def overfit(bundled):
    draws = [_draw(bundled, *p) for p in PICKS]
    batch = collate(draws)
    same = {
        k: getattr(batch, k)[:1].expand_as(getattr(batch, k)).clone() for k in ("prompt_ids", "prompt_valid")
    }
    batch = replace(batch, **same)  # one prompt for all: only the images differ
    manifest = json.loads((bundled / "manifest.json").read_text())
    tok_dir = str(bundled / manifest["tokenizer_set"]["path"])
    vocab = max(r[1] for r in load_tokenizer_set(tok_dir).ranges.values() if r)
    torch.manual_seed(0)
    model = VLA(PRESETS["tiny"].model(vocab), with_expert=True)
    before = _flow(model, batch)
    optim = learn(model, batch, 600)
    state = {
        "stage": "posttrain",
        "config": asdict(PRESETS["tiny"]),
        "model": asdict(model.cfg),
        "tokenizer_set": manifest["tokenizer_set"]["sha256"],
        "stats": {d: manifest["datasets"][d]["stats"]["sha256"] for d in ("mm_subtasks", "mobile_aloha_sim")},
        "layouts": {str(bundled): ["mm_subtasks", "mobile_aloha_sim"]},
    }
    return {
        "model": model.eval(),
        "batch": batch,
        "draws": draws,
        "before": before,
        "state": state,
        "optim": optim,
    }


def test_overfitting_a_handful_drives_the_flow_loss_to_zero_and_uses_vision(overfit):
    model, batch = overfit["model"], overfit["batch"]
    after = _flow(model, batch)
    assert overfit["before"] > 1.0 and after < 0.1 and after < 0.05 * overfit["before"], (
        overfit["before"],
        after,
    )

    inputs = {
        k: getattr(batch, k) for k in ("images", "image_mask", "prompt_ids", "prompt_valid", "target_ids")
    }
    inputs["expert_context"] = batch.expert_context
    chunk = sample_actions(model, inputs, torch.randn(batch.actions.shape, generator=_gen(99)))
    keep = (~batch.action_is_pad)[:, :, None] & batch.action_dim_mask[:, None, :]
    err = ((chunk - batch.actions) ** 2 * keep).sum() / keep.sum()
    mean_chunk = (batch.actions * keep).sum(0, keepdim=True) / keep.sum(0, keepdim=True).clamp(min=1)
    spread = ((batch.actions - mean_chunk) ** 2 * keep).sum() / keep.sum()  # error of ignoring the images
    assert err < 0.05 and err < 0.1 * spread, (err.item(), spread.item())

    perm = [1, 2, 3, 0]  # every sample gets another sample's cameras; prompts are the same anyway
    shuffled = replace(batch, images=batch.images[perm], image_mask=batch.image_mask[perm])
    confused = _flow(model, shuffled)
    assert confused > 10 * after
    print(
        f"\nflow {overfit['before']:.3f} -> {after:.4f}; images shuffled {confused:.3f}; chunk MSE {err:.4f} (spread {spread:.4f})"
    )


def _observation(bundled, draw: Draw, folder) -> tuple[list[str], np.ndarray, dict]:
    """Sample 0's camera files, native state (from the extracted frames) and shard members."""
    sample = read_sample(str(bundled), draw.shard, draw.offset, draw.length, key=draw.key)
    meta = json.loads(sample["meta.json"])
    present = np.load(io.BytesIO(sample["image_mask.npy"]))
    images = []
    for slot, on in zip(CAMERA_SLOTS, present, strict=True):
        if on:
            (folder / f"{slot}.jpg").write_bytes(sample[f"{slot}.jpg"])
            images += ["--images", f"{slot}={folder / f'{slot}.jpg'}"]
    frames = pq.read_table(bundled / WorkDir.frames("mobile_aloha_sim", meta["episode"]))
    row = next(r for r in frames.to_pylist() if r["frame"] == meta["frame"])
    return images, np.asarray(row["state"], np.float32), sample | {"task": row["task"]}


def _predict(checkpoint, dataset: str, images, state, task: str, *extra: str):
    cmd = [
        sys.executable,
        "-m",
        "vlamix.cli",
        "predict",
        "--checkpoint",
        str(checkpoint),
        "--dataset",
        dataset,
    ]
    cmd += ["--state", ",".join(f"{x:.9g}" for x in state), "--task", task, *images, "--json", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip().startswith("{") else done.stderr


def test_predict_gives_back_the_sample_in_native_units(overfit, bundled, tmp_path):
    ckpt = save_checkpoint(tmp_path / "run", 600, overfit["model"], overfit["optim"], overfit["state"])
    images, state, sample = _observation(bundled, overfit["draws"][0], tmp_path)
    rc, pred = _predict(ckpt, "mm_subtasks", images, state, sample["task"])
    assert rc == 0, pred
    assert pred["prompt"] == sample["prompt.txt"].decode()  # the observation chain rebuilt the shard's prompt
    assert pred["subtask"] == sample["target.txt"].decode() and pred["subtask_source"] == "model"
    assert pred["mode"] == "flow" and pred["valid"] and pred["embodiment"] == "mobile_aloha"

    store = Store(bundled)
    entry = json.loads((bundled / "manifest.json").read_text())["datasets"]["mm_subtasks"]
    emb = embodiment_of(store, entry)
    stats = store.read_json(entry["stats"]["path"])
    is_pad = np.load(io.BytesIO(sample["action_is_pad.npy"]))
    chain = build_chain(
        emb, DimStats.from_json(stats["state"]), DimStats.from_json(stats["actions"]), stats["normalization"]
    )
    target = native_chunk(chain, emb, np.load(io.BytesIO(sample["actions.npy"])), state, is_pad)
    got = np.asarray(pred["actions"])
    assert got.shape == (emb.chunk_horizon, emb.action_dim) and len(pred["dims"]) == emb.action_dim
    action_stats = DimStats.from_json(stats["actions"])
    span = action_stats.q99 - action_stats.q01
    rel = np.abs(got[: len(target)] - target) / np.maximum(span, 1e-2)
    # (measured here: mean 0.042, p95 0.14; the four chunks differ from their mean by ~0.3 of the span)
    assert rel.mean() < 0.08 and np.quantile(rel, 0.95) < 0.3, (rel.mean(), rel.max())
    print(f"\nnative chunk error / q01..q99 span: mean {rel.mean():.4f}, p95 {np.quantile(rel, 0.95):.4f}")

    # FAST decoding: the greedy tokens are the sample's own, so the chunk is its FAST reconstruction
    rc, fast = _predict(ckpt, "mm_subtasks", images, state, sample["task"], "--mode", "fast")
    assert rc == 0 and fast["valid"] and fast["subtask"] == pred["subtask"], fast
    tok = load_tokenizer_set(
        str(bundled / json.loads((bundled / "manifest.json").read_text())["tokenizer_set"]["path"])
    )
    own = np.load(io.BytesIO(sample["fast_ids.npy"])) - tok.ranges["fast"][0]
    assert fast["fast_tokens"] == own.tolist()
    rel_fast = np.abs(np.asarray(fast["actions"])[: len(target)] - target) / np.maximum(span, 1e-2)
    assert rel_fast.mean() < 0.02, rel_fast.mean()  # only FAST's rounding is left
    print(f"FAST chunk error / span: mean {rel_fast.mean():.4f}")

    # a subtask given by a person replaces the model's; hierarchical off asks for none
    rc, given = _predict(ckpt, "mm_subtasks", images, state, sample["task"], "--subtask", "wave hello")
    assert rc == 0 and given["subtask"] == "wave hello" and given["subtask_source"] == "given"
    rc, flat = _predict(ckpt, "mm_subtasks", images, state, sample["task"], "--no-hierarchical")
    assert rc == 0 and flat["subtask"] is None and flat["subtask_source"] == "none"

    # wrong inputs are one-line errors naming what is expected
    rc, err = _predict(ckpt, "mm_subtasks", images, state[:-1], sample["task"])
    assert rc == 2 and "state has 13 values, mobile_aloha has 14" in err and "Traceback" not in err
    rc, err = _predict(ckpt, "web_coco", images, state, sample["task"])
    assert rc == 2 and "has no robot actions" in err


def test_an_untrained_models_fast_tokens_are_reported_invalid(bundled, tmp_path, overfit):
    torch.manual_seed(3)
    state = {**overfit["state"], "stage": "pretrain"}
    model = VLA(overfit["model"].cfg, with_expert=False)
    ckpt = save_checkpoint(tmp_path / "fresh", 0, model, torch.optim.AdamW(model.parameters()), state)
    images, native_state, sample = _observation(bundled, overfit["draws"][0], tmp_path)
    rc, pred = _predict(ckpt, "mm_subtasks", images, native_state, sample["task"])
    assert rc == 3 and pred["mode"] == "fast" and not pred["valid"] and pred["actions"] is None
    assert "do not decode to a 50 x 16 chunk" in pred["error"] and pred["fast_tokens"] is not None
    rc, err = _predict(ckpt, "mm_subtasks", images, native_state, sample["task"], "--mode", "flow")
    assert rc == 2 and "no action expert" in err
