"""Sampler draws from the bundled layout become model batches: the prefix/target split gives back every
token, robot samples keep their chunks, and a tiny model runs forward on a real batch."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlamix.mixtures.resolve import resolve, split_view
from vlamix.mixtures.sampler import MixtureSampler
from vlamix.schemas.embodiment import CAMERA_SLOTS
from vlamix.tokenizers.tokenizer_set import load_tokenizer_set
from vlamix.trainer.augment import AugmentImages
from vlamix.trainer.data import IGNORE, collate
from vlamix.trainer.loader import BatchStream, batches
from vlamix.trainer.model import VLA, ModelConfig

pytestmark = pytest.mark.slow


def _members(d) -> dict:
    chunk = (Path(d.layout) / d.shard).read_bytes()[d.offset : d.offset + d.length]
    with tarfile.open(fileobj=io.BytesIO(chunk)) as t:
        return {m.name.split(".", 1)[1]: t.extractfile(m).read() for m in t.getmembers()}


def test_batches_split_tokens_exactly_and_run_forward(mixdir, bundled):
    res = resolve(mixdir / "pi05_pretrain.yaml")
    draws = MixtureSampler(res, seed=4).take(12)
    batch = collate(draws, max_prompt=512, max_targets=512)
    assert batch.truncated == 0 and batch.images.shape == (12, 4, 224, 224, 3)
    assert batch.images.dtype == torch.uint8  # as decoded: the model scales them on its device
    tok = load_tokenizer_set(str(bundled / res.manifests[draws[0].layout]["tokenizer_set"]["path"]))
    contexts = 0
    for i, d in enumerate(draws):
        m = _members(d)
        ids = np.load(io.BytesIO(m["input_ids.npy"]))
        for c, slot in enumerate(CAMERA_SLOTS):  # libjpeg-turbo into the batch: Pillow's very pixels
            pillow = np.asarray(Image.open(io.BytesIO(m[f"{slot}.jpg"])).convert("RGB"))
            assert np.array_equal(batch.images[i, c].numpy(), pillow), (d.key, slot)
        prompt = batch.prompt_ids[i][batch.prompt_valid[i]].numpy()
        labels = batch.labels[i][batch.labels[i] != IGNORE].numpy()
        # prefix + the [sep] that opens the target stream + every label = the whole sequence
        assert np.array_equal(np.concatenate([prompt, batch.target_ids[i, :1].numpy(), labels]), ids)
        if "actions.npy" in m:
            assert batch.has_actions[i]
            assert np.array_equal(batch.actions[i].numpy(), np.load(io.BytesIO(m["actions.npy"])))
            # the action expert sees [sep], the subtask and its closing [sep] (HL), never FAST tokens
            subtask = tok.text_ids(m["target.txt"].decode()) if m.get("target.txt") else []
            seen = int(batch.expert_context[i].sum())
            assert seen == (len(subtask) + 2 if subtask else 1)
            assert batch.target_ids[i, seen] == tok.special("<action>")
            contexts += bool(subtask)
        else:
            assert not batch.expert_context[i].any()
    assert contexts and batch.has_actions.any() and not batch.has_actions.all()  # HL, robot and web mixed
    vocab = max(r[1] for r in tok.ranges.values() if r)
    torch.manual_seed(0)
    model = VLA(
        ModelConfig(
            vocab_size=vocab, width=32, depth=1, heads=2, expert_width=16, vit_width=16, vit_depth=1, patch=56
        )
    )
    logits, velocity = model(
        batch.images,
        batch.image_mask,
        batch.prompt_ids,
        batch.prompt_valid,
        batch.target_ids,
        batch.actions,
        torch.full((12,), 0.5),
    )
    loss = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE
    )
    assert torch.isfinite(loss) and abs(loss.item() - np.log(vocab)) < 1.0  # untrained: near uniform
    assert velocity.shape == batch.actions.shape


def test_batches_are_the_same_for_any_number_of_workers(mixdir):
    """Batch k holds draws k*B .. k*B+B-1 however many dataloader processes build them, and a stream
    started at batch 3 (a resume) continues with exactly batch 3."""
    res = split_view(resolve(mixdir / "pi05_pretrain.yaml"), held_out=False)
    stream = BatchStream(res, seed=5, batch_size=3, augment=AugmentImages(5))
    inline = [kb for _, kb in zip(range(5), batches(stream, 0), strict=False)]
    pooled = [kb for _, kb in zip(range(5), batches(stream, 2), strict=False)]
    assert [k for k, _ in pooled] == list(range(5))
    for (_, a), (_, b) in zip(inline, pooled, strict=True):
        assert (
            a.keys == b.keys and torch.equal(a.images, b.images) and torch.equal(a.target_ids, b.target_ids)
        )
    resumed = next(iter(BatchStream(res, seed=5, batch_size=3, start=3, augment=AugmentImages(5))))
    assert resumed[0] == 3 and resumed[1].keys == inline[3][1].keys
    assert torch.equal(resumed[1].images, inline[3][1].images)
    draws = MixtureSampler(res, seed=5).take(15)
    assert [k for _, b in inline for k in b.keys] == [d.key for d in draws]  # the sampler's own order
