"""The backbone loader on a tiny PaliGemma snapshot's files (what `--backbone DIR` reads after a real
snapshot is downloaded): the weights are the snapshot's, the vocabulary grows by the layout's FAST ids
with the backbone's rows kept and the output layer still tied, and what is not PaliGemma 1 is refused
with one line. No network (`local_files_only`)."""

from __future__ import annotations

import json

import pytest
import torch
from backbone_snapshot import tiny_paligemma
from safetensors.torch import load_file

from vlamix.trainer.paligemma import PaliGemmaVLA, load_backbone_config


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    folder = tmp_path_factory.mktemp("snapshot")
    tiny_paligemma(folder, vocab=40)
    return folder


def test_the_weights_are_the_snapshots_and_the_vocabulary_grows(snapshot):
    cfg = load_backbone_config(snapshot, vocab_size=40 + 24)
    assert (cfg.backbone_vocab, cfg.width, cfg.depth, cfg.heads, cfg.kv_heads, cfg.head_dim) == (
        40,
        48,
        2,
        4,
        1,
        12,
    )
    assert cfg.image_size == 28 and cfg.expert_width == 64
    model = PaliGemmaVLA(cfg)
    saved = load_file(snapshot / "model.safetensors")
    q = next(k for k in saved if k.endswith("layers.1.self_attn.q_proj.weight"))
    assert torch.equal(model.layers[1].self_attn.q_proj.weight, saved[q])
    patch = dict(model.vit.tower.named_parameters())["embeddings.patch_embedding.weight"]
    assert torch.equal(patch, saved["vision_tower.embeddings.patch_embedding.weight"])
    embed = next(k for k in saved if k.endswith("embed_tokens.weight"))
    assert model.embed.weight.shape == (64, 48)
    assert torch.equal(model.embed.weight[:40], saved[embed])  # the backbone's own rows, unchanged
    assert model.lm_head.weight is model.embed.weight  # tied, as PaliGemma's
    random = PaliGemmaVLA(cfg, pretrained=False)
    assert not torch.equal(random.layers[1].self_attn.q_proj.weight, saved[q])


def test_what_is_not_a_paligemma_1_snapshot_is_refused(snapshot, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json missing.*huggingface-cli download"):
        load_backbone_config(tmp_path, 64)
    with pytest.raises(ValueError, match="smaller than the backbone's own 40"):
        load_backbone_config(snapshot, 30)
    config = json.loads((snapshot / "config.json").read_text())
    config["text_config"]["model_type"] = "gemma2"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="only PaliGemma 1"):
        load_backbone_config(tmp_path, 64)


def test_gradient_checkpointing_gives_the_same_gradients(snapshot):
    from test_vla_model import _inputs

    cfg = load_backbone_config(snapshot, 50, 16)
    cfg = type(cfg)(**{**vars(cfg), "action_dim": 8, "horizon": 6})
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = PaliGemmaVLA(cfg, checkpointing=checkpointing).train()
        logits, v = model(**_inputs())
        (logits.float().pow(2).mean() + v.pow(2).mean()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-5, atol=1e-6, msg=name)


def test_the_real_size_architecture_on_the_meta_device(tmp_path):
    """google/paligemma-3b-pt-224's config (its config.json's sizes, written here: nothing is
    downloaded), built without memory on the meta device: PaliGemma's 2.92B parameters, pi0's ~300M
    expert at the default width, and the table grown by our two specials and 1024 FAST ids."""
    from transformers import PaliGemmaConfig

    PaliGemmaConfig(
        vision_config={"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16,
                       "num_hidden_layers": 27, "patch_size": 14, "image_size": 224, "projection_dim": 2048,
                       "vision_use_head": False},
        text_config={"hidden_size": 2048, "intermediate_size": 16384, "num_attention_heads": 8,
                     "num_key_value_heads": 1, "num_hidden_layers": 18, "head_dim": 256, "vocab_size": 257_216},
        image_token_index=257_152,
        projection_dim=2048,
    ).save_pretrained(tmp_path)  # fmt: skip
    cfg = load_backbone_config(tmp_path, 257_216 + 2 + 1024)
    assert (cfg.width, cfg.depth, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.expert_width) == (
        2048, 18, 8, 1, 256, 1024,
    )  # fmt: skip
    with torch.device("meta"):
        model = PaliGemmaVLA(cfg, pretrained=False)
    expert = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("action_", "time_mlp")))
    backbone = sum(p.numel() for p in model.parameters()) - expert
    grown = 1026 * 2048  # the embedding rows of <action>, <end_of_action> and FAST (tied output layer)
    assert 2.91e9 < backbone - grown < 2.93e9, backbone  # PaliGemma 3B
    assert 3.0e8 < expert < 3.2e8, expert  # pi0's Gemma 300M
    assert model.embed.weight.shape == (257_216 + 1026, 2048) and model.vit.tokens_per_image == 256


@pytest.mark.parametrize("stage2", [False, True])
def test_every_trainable_parameter_gets_a_gradient(snapshot, stage2):
    """What DistributedDataParallel needs of each stage (else every rank fails at the second step with
    'Expected to have finished reduction'): stage 1 freezes the expert, and SigLIP's pooling head, which
    PaliGemma never reads, stays frozen in both stages."""
    from test_vla_model import _inputs

    from vlamix.trainer.train import freeze_unused

    cfg = load_backbone_config(snapshot, 50, 16)
    cfg = type(cfg)(**{**vars(cfg), "action_dim": 8, "horizon": 6})
    model = PaliGemmaVLA(cfg, with_expert=stage2).train()
    freeze_unused(model, stage2)
    x = _inputs()
    if not stage2:
        x = {k: v for k, v in x.items() if k not in ("noisy_actions", "time", "expert_context")}
    logits, v = model(**x)
    (logits.float().pow(2).mean() + (v.pow(2).mean() if stage2 else 0)).backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("vit.tower.head.") for n in frozen)
    assert stage2 == (not any(n.startswith("action_expert.") for n in frozen))
