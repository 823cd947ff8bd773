"""The model's attention pattern and gradient paths, proven by perturbation and autograd, for the small
model (tiny config) and for the PaliGemma backbone model (a tiny PaliGemma snapshot made with
`transformers` and `save_pretrained`). "Unchanged" means bit for bit (torch.equal): a masked key
contributes an exact zero, never a small one."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from backbone_snapshot import tiny_paligemma

from vlamix.trainer.model import VLA, ModelConfig, flow_loss, prefix_target_mask, sample_time
from vlamix.trainer.paligemma import PaliGemmaVLA, load_backbone_config

CFG = ModelConfig(
    vocab_size=50,
    width=32,
    depth=2,
    heads=2,
    expert_width=16,
    vit_width=16,
    vit_depth=1,
    patch=56,
    action_dim=8,
    horizon=6,
)
B, C, P, S = 2, 2, 5, 4


def _inputs(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "images": torch.randint(0, 256, (B, C, 224, 224, 3), generator=g, dtype=torch.uint8),
        "image_mask": torch.tensor([[True, False], [True, True]]),
        "prompt_ids": torch.randint(0, 50, (B, P), generator=g),
        "prompt_valid": torch.ones(B, P, dtype=torch.bool),
        "target_ids": torch.randint(0, 50, (B, S), generator=g),
        "noisy_actions": torch.randn(B, CFG.horizon, CFG.action_dim, generator=g),
        "time": torch.tensor([0.3, 0.9]),
        # the expert sees target positions 0..1 of row 0 (a subtask's [sep] and one word) and none of row 1
        "expert_context": torch.tensor([[True, True, False, False], [False, False, False, False]]),
    }


@pytest.fixture(scope="module", params=["small", "paligemma"])
def which(request, tmp_path_factory):
    if request.param == "small":
        return lambda: VLA(CFG)
    folder = tmp_path_factory.mktemp("tiny_paligemma")
    tiny_paligemma(folder)  # its own vocabulary 40; the layout's 50 (FAST ids after it)
    cfg = dataclasses.replace(
        load_backbone_config(folder, 50, 16), action_dim=CFG.action_dim, horizon=CFG.horizon
    )
    return lambda: PaliGemmaVLA(cfg)


@pytest.fixture
def make(which):
    def build():
        torch.manual_seed(0)
        return which().eval()

    return build


def _backbone_and_expert(model) -> tuple[list, list]:
    expert = [
        p for n, p in model.named_parameters() if ".expert." in n or n.startswith(("action_", "time_mlp"))
    ]
    backbone = [
        p
        for n, p in model.named_parameters()
        if n.startswith(("vit.", "embed.", "layers.")) and ".expert." not in n
    ]
    return backbone, expert


def test_mask_prefix_bidirectional_targets_causal():
    m = prefix_target_mask(3, 4, torch.ones(1, 7, dtype=torch.bool))[0]
    assert m[:3, :3].all() and not m[:3, 3:].any()  # the prefix sees itself both ways, never the targets
    assert torch.equal(m[3:, 3:], torch.ones(4, 4, dtype=torch.bool).tril()) and m[3:, :3].all()


def test_targets_are_causal_and_never_see_actions(make):
    model, x = make(), _inputs()
    logits, _ = model(**x)
    later = {**x, "target_ids": x["target_ids"].clone()}
    later["target_ids"][:, -1] = (later["target_ids"][:, -1] + 1) % 50
    logits2, _ = model(**later)
    assert torch.equal(logits[:, :-1], logits2[:, :-1])  # earlier targets do not see a later one
    assert not torch.allclose(logits[:, -1], logits2[:, -1])
    # nothing the action expert reads changes a prefix or target logit (the FAST ones included)
    other_actions = {
        **x,
        "noisy_actions": torch.randn_like(x["noisy_actions"]),
        "time": torch.tensor([0.7, 0.1]),
    }
    assert torch.equal(model(**other_actions)[0], logits)
    no_expert = {k: v for k, v in x.items() if k not in ("noisy_actions", "time", "expert_context")}
    assert torch.equal(model(**no_expert)[0], logits)  # the same logits with no action tokens at all
    other_prompt = {**x, "prompt_ids": (x["prompt_ids"] + 1) % 50}
    assert not torch.allclose(model(**other_prompt)[0], logits)  # targets see the prefix


def test_actions_see_the_prefix_and_subtask_but_never_the_fast_targets(make):
    model, x = make(), _inputs()
    _, v = model(**x)
    fast = x["target_ids"].clone()
    fast[0, 2:] = (fast[0, 2:] + 7) % 50  # row 0: the targets after its subtask (the FAST tokens)
    fast[1, :] = (fast[1, :] + 7) % 50  # row 1: every target (a robot sample without subtask)
    _, v_targets = model(**{**x, "target_ids": fast})
    assert torch.equal(v, v_targets)  # FAST targets would leak the answer: never attended
    subtask = x["target_ids"].clone()
    subtask[0, 1] = (subtask[0, 1] + 1) % 50
    _, v_subtask = model(**{**x, "target_ids": subtask})
    assert not torch.allclose(v[0], v_subtask[0]) and torch.equal(v[1], v_subtask[1])  # the subtask is seen
    _, v_prompt = model(**{**x, "prompt_ids": (x["prompt_ids"] + 1) % 50})
    assert not torch.allclose(v, v_prompt)


def test_padding_never_changes_a_samples_outputs(make):
    """Positions count valid tokens only: padding the prompt (as a longer batch-mate forces) or the
    targets changes no logit or velocity of the real tokens."""
    model, x = make(), _inputs()
    logits, v = model(**x)
    pad = 3
    padded = {
        **x,
        "prompt_ids": torch.cat([x["prompt_ids"], torch.randint(0, 50, (B, pad))], dim=1),
        "prompt_valid": torch.cat([x["prompt_valid"], torch.zeros(B, pad, dtype=torch.bool)], dim=1),
        "target_ids": torch.cat([x["target_ids"], torch.randint(0, 50, (B, pad))], dim=1),
        "expert_context": torch.cat([x["expert_context"], torch.zeros(B, pad, dtype=torch.bool)], dim=1),
    }
    logits2, v2 = model(**padded)
    torch.testing.assert_close(logits2[:, :S], logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(v2, v, rtol=1e-5, atol=1e-5)
    shuffled = {**x, "prompt_ids": x["prompt_ids"].flip(1)}  # but the order of the prompt matters
    assert not torch.allclose(model(**shuffled)[0], logits)


def test_an_absent_camera_changes_nothing(make):
    model, x = make(), _inputs()
    logits, v = model(**x)
    images = x["images"].clone()
    images[0, 1] = 255 - images[0, 1]  # sample 0's camera 1 is absent (mask False)
    logits2, v2 = model(**{**x, "images": images})
    assert torch.equal(logits2, logits) and torch.equal(v2, v)


def test_flow_gradients_stop_at_the_backbone(make):
    model, x = make().train(), _inputs()
    _, v = model(**x)
    is_pad = torch.zeros(B, CFG.horizon, dtype=torch.bool)
    loss = flow_loss(v, torch.randn_like(v), is_pad, torch.ones(B, CFG.action_dim, dtype=torch.bool))
    loss.backward()
    backbone, expert = _backbone_and_expert(model)
    assert backbone and expert
    assert all(p.grad is None or not p.grad.any() for p in backbone)  # knowledge insulation
    vit = [p for n, p in model.named_parameters() if n.startswith("vit.")]
    assert vit and all(p.grad is None or not p.grad.any() for p in vit)  # the image encoder included
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in expert)
    model.zero_grad()
    logits, _ = model(**x)
    logits.sum().backward()  # the CE path trains the backbone, not the expert
    assert any(p.grad is not None and p.grad.any() for p in backbone)
    assert all(p.grad is None or not p.grad.any() for p in expert)


def test_flow_loss_ignores_padded_steps_and_dims():
    v, u = torch.zeros(1, 4, 3), torch.ones(1, 4, 3)
    is_pad = torch.tensor([[False, False, True, True]])
    dims = torch.tensor([[True, True, False]])
    base = flow_loss(v, u, is_pad, dims)
    v2 = v.clone()
    v2[0, 2:, :] = 100.0  # padded steps
    v2[0, :, 2] = -100.0  # a padded dim
    assert flow_loss(v2, u, is_pad, dims) == base == 1.0


def test_time_follows_beta_1_5_1():
    t = sample_time(200_000, torch.Generator().manual_seed(0))
    assert t.min() >= 0.001 and t.max() <= 1.0
    assert abs(t.mean().item() - (0.6 * 0.999 + 0.001)) < 0.005  # Beta(1.5, 1) has mean 0.6
    assert abs((t < 0.5).float().mean().item() - ((0.5 - 0.001) / 0.999) ** 1.5) < 0.005  # CDF t**1.5
