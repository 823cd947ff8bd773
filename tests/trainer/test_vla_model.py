"""The model's attention pattern and gradient paths, proven by perturbation and autograd (tiny config)."""

from __future__ import annotations

import torch

from vlamix.trainer.model import VLA, ModelConfig, flow_loss, prefix_target_mask, sample_time

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
        "images": torch.rand(B, C, 3, 224, 224, generator=g) * 2 - 1,
        "image_mask": torch.tensor([[True, False], [True, True]]),
        "prompt_ids": torch.randint(0, 50, (B, P), generator=g),
        "prompt_valid": torch.ones(B, P, dtype=torch.bool),
        "target_ids": torch.randint(0, 50, (B, S), generator=g),
        "noisy_actions": torch.randn(B, CFG.horizon, CFG.action_dim, generator=g),
        "time": torch.tensor([0.3, 0.9]),
    }


def _model() -> VLA:
    torch.manual_seed(0)
    return VLA(CFG).eval()


def test_mask_prefix_bidirectional_targets_causal():
    m = prefix_target_mask(3, 4, torch.ones(1, 7, dtype=torch.bool))[0]
    assert m[:3, :3].all() and not m[:3, 3:].any()  # the prefix sees itself both ways, never the targets
    assert torch.equal(m[3:, 3:], torch.ones(4, 4, dtype=torch.bool).tril()) and m[3:, :3].all()


def test_targets_are_causal_and_never_see_actions():
    model, x = _model(), _inputs()
    logits, _ = model(**x)
    later = {**x, "target_ids": x["target_ids"].clone()}
    later["target_ids"][:, -1] = (later["target_ids"][:, -1] + 1) % 50
    logits2, _ = model(**later)
    torch.testing.assert_close(logits[:, :-1], logits2[:, :-1])  # earlier targets do not see a later one
    assert not torch.allclose(logits[:, -1], logits2[:, -1])
    other_actions = {**x, "noisy_actions": torch.randn_like(x["noisy_actions"])}
    torch.testing.assert_close(model(**other_actions)[0], logits)  # no target ever attends to an action
    other_prompt = {**x, "prompt_ids": (x["prompt_ids"] + 1) % 50}
    assert not torch.allclose(model(**other_prompt)[0], logits)  # targets see the prefix


def test_actions_see_the_prefix_but_not_the_targets():
    model, x = _model(), _inputs()
    _, v = model(**x)
    _, v_targets = model(**{**x, "target_ids": (x["target_ids"] + 7) % 50})
    torch.testing.assert_close(v, v_targets)  # FAST targets would leak the answer: never attended
    _, v_prompt = model(**{**x, "prompt_ids": (x["prompt_ids"] + 1) % 50})
    assert not torch.allclose(v, v_prompt)


def test_an_absent_camera_changes_nothing():
    model, x = _model(), _inputs()
    logits, v = model(**x)
    images = x["images"].clone()
    images[0, 1] = torch.rand_like(images[0, 1])  # sample 0's camera 1 is absent (mask False)
    logits2, v2 = model(**{**x, "images": images})
    torch.testing.assert_close(logits2, logits)
    torch.testing.assert_close(v2, v)


def test_flow_gradients_stop_at_the_backbone():
    model, x = VLA(CFG).train(), _inputs()
    _, v = model(**x)
    is_pad = torch.zeros(B, CFG.horizon, dtype=torch.bool)
    loss = flow_loss(v, torch.randn_like(v), is_pad, torch.ones(B, CFG.action_dim, dtype=torch.bool))
    loss.backward()
    backbone = [
        p for n, p in model.named_parameters() if n.startswith(("vit.", "embed.")) or ".backbone." in n
    ]
    expert = [
        p for n, p in model.named_parameters() if ".expert." in n or n.startswith(("action_", "time_mlp"))
    ]
    assert backbone and expert
    assert all(p.grad is None or not p.grad.any() for p in backbone)  # knowledge insulation
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
