"""Draws of the mixture sampler -> model batches: each sample read by its byte range, decoded, its token
sequence split into the bidirectional prefix and the causal targets, padded.

Token budget and truncation: the prefix is the images (cameras x patches) plus the prompt up to and
excluding its closing [sep]; the target stream starts at that [sep] and predicts everything after it
(subtask text, answers, captions, boxes, FAST tokens, [eos]). A prompt longer than `max_prompt` keeps its
first tokens; targets longer than `max_targets` keep their first tokens (the loss then never sees the
tail: counted in `truncated`, never silent)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import torch

from vlamix.mixtures.sampler import Draw
from vlamix.schemas.embodiment import CAMERA_SLOTS
from vlamix.shards.members import npy_array
from vlamix.shards.random_access import SampleReadError, read_sample
from vlamix.tokenizers.vocab import SPECIALS
from vlamix.transforms.image import IMAGE_SIZE, decode_jpeg_into

__all__ = ["ACTION", "IGNORE", "Batch", "collate", "decode_sample", "read_draw"]

IGNORE = -100  # label of positions without loss
# opens the FAST tokens; the action expert sees the stream before it. This is its id in our own
# vocabulary; a layout built for a backbone has another (TokenizerSet.special("<action>")).
ACTION = SPECIALS.index("<action>")


@dataclass
class Batch:
    images: torch.Tensor  # [B, C, 224, 224, 3] uint8 as decoded: the model scales them on its device
    image_mask: torch.Tensor  # [B, C] bool
    prompt_ids: torch.Tensor  # [B, P]
    prompt_valid: torch.Tensor  # [B, P] bool
    target_ids: torch.Tensor  # [B, S] inputs of the causal stream
    labels: torch.Tensor  # [B, S] next tokens, IGNORE where no loss
    expert_context: torch.Tensor  # [B, S] bool: target positions before `<action>` (subtask text)
    actions: torch.Tensor  # [B, 50, 32] normalized, padded
    action_is_pad: torch.Tensor  # [B, 50] bool
    action_dim_mask: torch.Tensor  # [B, 32] bool
    has_actions: torch.Tensor  # [B] bool: robot samples (the flow loss' rows)
    datasets: list[str]
    kinds: list[str]
    keys: list[str]
    truncated: int
    input: dict = field(default_factory=dict)  # what reading it cost (sample_source: fetched bytes, hits)

    def to(self, device: torch.device | str) -> Batch:
        """The batch with its tensors on `device` (the lists stay)."""
        moved = {
            k: v.to(device, non_blocking=True) for k, v in vars(self).items() if isinstance(v, torch.Tensor)
        }
        return Batch(**{**vars(self), **moved})


def _npy(sample: dict, name: str) -> np.ndarray | None:
    return npy_array(sample[name]) if name in sample else None


def decode_sample(sample: dict, images: np.ndarray | None = None) -> dict:
    """Shard members -> arrays: images [C, 224, 224, 3] uint8, decoded straight into `images` when given
    (a row of the batch's own array: no copies), ids, masks, actions. An absent camera's slot holds the
    black stand-in JPEG; it is not decoded, just zeroed (what it decodes to; the model masks it anyway)."""
    if images is None:
        images = np.empty((len(CAMERA_SLOTS), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    present = _npy(sample, "image_mask.npy").astype(bool)
    for i, slot in enumerate(CAMERA_SLOTS):
        jpeg = sample[f"{slot}.jpg"]
        if present[i]:
            decode_jpeg_into(jpeg, images[i])
        else:
            images[i] = 0
    out = {
        "images": images,
        "image_mask": present,
        "input_ids": _npy(sample, "input_ids.npy").astype(np.int64),
        "loss_mask": _npy(sample, "loss_mask.npy").astype(bool),
    }
    actions = _npy(sample, "actions.npy")
    out["actions"] = actions if actions is not None else np.zeros((50, 32), np.float32)
    out["action_is_pad"] = _npy(sample, "action_is_pad.npy") if actions is not None else np.ones(50, bool)
    dim_mask = _npy(sample, "action_dim_mask.npy")
    out["action_dim_mask"] = dim_mask if dim_mask is not None else np.zeros(32, bool)
    out["has_actions"] = actions is not None
    out["kind"] = json.loads(sample["meta.json"])["kind"] if "meta.json" in sample else "?"
    return out


def read_draw(d: Draw, images: np.ndarray | None = None, sample: dict | None = None) -> dict:
    """One draw read (its bytes checked against the index's crc32, when the index has one) and decoded,
    its images into `images` when given; `sample`: its members, already read (SampleSource.read). Any
    failure is a SampleReadError that names the shard, byte range and key: never a skipped sample."""
    if sample is None:
        sample = read_sample(d.layout, d.shard, d.offset, d.length, key=d.key, crc32=d.crc32)
    try:
        return decode_sample(sample, images)
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise SampleReadError(
            f"{d.layout}/{d.shard} bytes {d.offset}+{d.length} (sample {d.key}): cannot decode "
            f"({type(e).__name__}: {e}); the shard is damaged: re-publish the layout"
        ) from e


def collate(
    draws: list[Draw], max_prompt: int = 96, max_targets: int = 128, source=None, action: int = ACTION
) -> Batch:
    """Read, decode and pad the draws of one batch (each checked against its index's crc32, when the
    layout's index has one), through `source` (a SampleSource: the shard cache for remote layouts) or
    by byte range. The JPEGs decode straight into the batch's image array."""
    images = np.empty((len(draws), len(CAMERA_SLOTS), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    samples = source.read(draws) if source is not None else [None] * len(draws)
    rows = [read_draw(d, images[i], s) for i, (d, s) in enumerate(zip(draws, samples, strict=True))]
    datasets, keys = [d.dataset for d in draws], [d.key for d in draws]
    return collate_rows(rows, datasets, keys, max_prompt, max_targets, images, action)


def collate_rows(
    rows: list[dict],
    datasets: list[str],
    keys: list[str],
    max_prompt: int,
    max_targets: int,
    images: np.ndarray | None = None,
    action: int = ACTION,
) -> Batch:
    """Pad decoded samples (`decode_sample`) into one batch; `images`: the rows' images as one [B, C, H,
    W, 3] array already (what `collate` decodes into), else they are stacked."""
    prompts, targets, labels, truncated = [], [], [], 0
    for r in rows:
        ids, mask = r["input_ids"], r["loss_mask"]
        n_prefix = int(np.argmax(mask)) if mask.any() else len(ids)  # the first loss position
        prompt = ids[: n_prefix - 1]  # without the closing [sep], which opens the target stream
        stream = ids[n_prefix - 1 : -1]
        label = ids[n_prefix:]
        truncated += int(len(prompt) > max_prompt) + int(len(stream) > max_targets)
        prompts.append(prompt[:max_prompt])
        targets.append(stream[:max_targets])
        labels.append(label[:max_targets])
    p, s = max(len(x) for x in prompts), max(len(x) for x in targets)
    prompt_ids = torch.zeros(len(rows), p, dtype=torch.long)
    prompt_valid = torch.zeros(len(rows), p, dtype=torch.bool)
    target_ids = torch.zeros(len(rows), s, dtype=torch.long)
    label_t = torch.full((len(rows), s), IGNORE, dtype=torch.long)
    context = torch.zeros(len(rows), s, dtype=torch.bool)
    for i, (pr, tg, lb) in enumerate(zip(prompts, targets, labels, strict=True)):
        prompt_ids[i, : len(pr)] = torch.from_numpy(pr)
        prompt_valid[i, : len(pr)] = True
        target_ids[i, : len(tg)] = torch.from_numpy(tg)
        label_t[i, : len(lb)] = torch.from_numpy(lb)
        opens = np.flatnonzero(tg == action)
        context[i, : int(opens[0]) if len(opens) else 0] = True
    stack = lambda k, dt: torch.from_numpy(np.stack([r[k] for r in rows]).astype(dt))  # noqa: E731
    return Batch(
        images=torch.from_numpy(images if images is not None else np.stack([r["images"] for r in rows])),
        image_mask=stack("image_mask", bool),
        prompt_ids=prompt_ids,
        prompt_valid=prompt_valid,
        target_ids=target_ids,
        labels=label_t,
        expert_context=context,
        actions=stack("actions", np.float32),
        action_is_pad=stack("action_is_pad", bool),
        action_dim_mask=stack("action_dim_mask", bool),
        has_actions=torch.tensor([r["has_actions"] for r in rows]),
        datasets=datasets,
        kinds=[str(r["kind"]) for r in rows],
        keys=keys,
        truncated=truncated,
    )
