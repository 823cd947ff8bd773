"""Image augmentation (seeded by batch number, only where it is safe) and the typed model configs."""

from __future__ import annotations

import pytest
import torch

from vlamix.config import ConfigError
from vlamix.trainer.augment import WARPED_SLOTS, AugmentImages
from vlamix.trainer.configs import PRESETS, load_config
from vlamix.trainer.data import Batch


def _batch(b: int = 3) -> Batch:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (b, 4, 224, 224, 3), generator=g, dtype=torch.uint8)
    return Batch(
        images=images,
        image_mask=torch.tensor([[True, True, True, False]] * b),
        prompt_ids=torch.zeros(b, 2, dtype=torch.long),
        prompt_valid=torch.ones(b, 2, dtype=torch.bool),
        target_ids=torch.zeros(b, 2, dtype=torch.long),
        labels=torch.zeros(b, 2, dtype=torch.long),
        expert_context=torch.zeros(b, 2, dtype=torch.bool),
        actions=torch.zeros(b, 50, 32),
        action_is_pad=torch.zeros(b, 50, dtype=torch.bool),
        action_dim_mask=torch.ones(b, 32, dtype=torch.bool),
        has_actions=torch.tensor([True, True, False][:b]),
        datasets=["d"] * b,
        kinds=["MM", "MM", "WD"][:b],
        keys=[f"d/{i}" for i in range(b)],
        truncated=0,
    )


def test_augmentation_is_a_function_of_seed_and_batch_number():
    batch, aug = _batch(), AugmentImages(seed=7)
    a, again = aug(batch, 5), aug(batch, 5)
    assert torch.equal(a.images, again.images)  # a resumed run augments batch 5 the same way
    assert not torch.equal(aug(batch, 6).images, a.images)
    assert not torch.equal(AugmentImages(seed=8)(batch, 5).images, a.images)
    assert torch.equal(batch.images, _batch().images)  # the input batch is not edited in place
    assert a.images.dtype == torch.uint8 and a.images.shape == batch.images.shape


def test_only_present_cameras_change_and_only_robot_base_cameras_are_warped():
    batch = _batch()
    jitter_only = AugmentImages(seed=1, crop=1.0, degrees=0.0)  # no warp: colour only
    warped = AugmentImages(seed=1)(batch, 0)
    colour = jitter_only(batch, 0)
    assert torch.equal(warped.images[:, 3], batch.images[:, 3])  # absent camera: untouched
    for cam in range(3):
        assert not torch.equal(colour.images[:, cam], batch.images[:, cam])  # colour jitter everywhere
    for row in range(3):
        for cam in range(3):
            same = torch.equal(warped.images[row, cam], colour.images[row, cam])
            # robot samples warp their base cameras; wrist cameras and web images (boxes!) are not warped
            assert same == (cam not in WARPED_SLOTS or not batch.has_actions[row]), (row, cam)
    still = AugmentImages(seed=1, crop=1.0, degrees=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
    assert torch.equal(still(batch, 0).images, batch.images)  # with every amount at zero: the identity


def test_presets_and_yaml_configs_are_typed(tmp_path):
    tiny = load_config("tiny")
    assert tiny is PRESETS["tiny"] and tiny.token_budget == 4 * 16 + 96 + 128
    assert PRESETS["base"].token_budget == 4 * 196 + 96 + 128
    good = tmp_path / "wide.yaml"
    good.write_text("preset: tiny\nwidth: 128\nmax_targets: 64\n")
    cfg = load_config(good)
    assert (cfg.name, cfg.width, cfg.depth, cfg.max_targets) == ("wide", 128, tiny.depth, 64)
    typo = tmp_path / "typo.yaml"
    typo.write_text("preset: tiny\nwidht: 128\n")
    with pytest.raises(ConfigError, match="did you mean 'width'"):
        load_config(typo)
    odd = tmp_path / "odd.yaml"
    odd.write_text("preset: tiny\nheads: 3\n")
    with pytest.raises(ConfigError, match="heads"):
        load_config(odd)
    with pytest.raises(ConfigError, match="give a preset"):
        load_config("huge")


# nightly: a 205 M-parameter forward and backward pass (~20 s on 2 cores) proves the GPU preset's size and
# wiring; the tiny preset's training runs in `make test` prove the same code paths.
@pytest.mark.slow
@pytest.mark.nightly
def test_base_builds_and_takes_a_step_on_the_cpu():
    """The GPU-sized config is a real model: ~205 M parameters, a forward and backward pass of one
    example over its full token budget (the GPU run itself is not part of the tests)."""
    from vlamix.trainer.model import VLA, flow_loss

    cfg = PRESETS["base"].model(vocab_size=3000)
    torch.manual_seed(0)
    model = VLA(cfg)
    assert 190e6 < sum(p.numel() for p in model.parameters()) < 220e6
    run = PRESETS["base"]
    g = torch.Generator().manual_seed(0)
    logits, v = model(
        torch.randint(0, 256, (1, 4, 224, 224, 3), generator=g, dtype=torch.uint8),
        torch.ones(1, 4, dtype=torch.bool),
        torch.randint(0, 3000, (1, run.max_prompt), generator=g),
        torch.ones(1, run.max_prompt, dtype=torch.bool),
        torch.randint(0, 3000, (1, run.max_targets), generator=g),
        torch.randn(1, 50, 32, generator=g),
        torch.tensor([0.5]),
    )
    loss = logits.logsumexp(-1).mean() + flow_loss(
        v, torch.zeros_like(v), torch.zeros(1, 50, dtype=torch.bool), torch.ones(1, 32, dtype=torch.bool)
    )
    loss.backward()
    assert torch.isfinite(loss) and model.vit.patch.weight.grad.abs().sum() > 0
