"""The VLA on a pretrained vision-language backbone: PaliGemma's architecture (a SigLIP vision tower, a
linear projector and a Gemma decoder) loaded with `transformers` from a local snapshot folder (the
`save_pretrained` layout), with pi0.5's action expert beside it. It takes the same inputs and gives the
same outputs as the small model (`trainer/model.py` `VLA`), so the loop, the losses and predict use
either.

- **Images.** Each of the layout's camera slots goes through SigLIP on its own (openpi's way), resized
  from the layout's 224x224 to the tower's `image_size` when they differ (bilinear), scaled to [-1, 1]
  (SigLIP's mean 0.5, std 0.5); a slot's tokens are the projector's output. Absent cameras are masked
  out of attention as in the small model.
- **Text.** Prompt and target ids go through Gemma's own embedding (scaled by sqrt(width), as Gemma
  does); the embedding and the tied output layer grow to the layout's vocabulary when it is larger (new
  rows: FAST ids appended after the backbone's vocabulary), initialised like the rest.
- **Layers.** Each decoder layer is run by hand so the expert can join its attention: the backbone's
  queries, keys and values (RMSNorm, RoPE at positions counting valid tokens only, grouped key/value
  heads) and the expert's own from its own weights; the attention rules are the small model's
  (`prefix_target_mask`; action tokens see the prefix and the subtask text, never the FAST tokens) and
  the expert reads the backbone's keys and values through a stop-gradient (knowledge insulation).
- **The expert** is a Gemma decoder of the backbone's depth, heads and head size with its own (smaller)
  width, `expert_width`; with the time embedding and the action projections it is what stage 2 adds.
  Parameters named `action_*` are the expert's (`is_expert_param`).

Only PaliGemma 1 (a Gemma decoder) is taken; PaliGemma 2's Gemma 2 decoder (logit soft-capping, extra
norms) is refused with one line."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vlamix.trainer.model import action_tokens, prefix_target_mask

__all__ = ["BackboneConfig", "PaliGemmaVLA", "load_backbone_config"]


@dataclass(frozen=True)
class BackboneConfig:
    """What a checkpoint records of a backbone model (sizes read from the snapshot's config.json)."""

    snapshot: str
    vocab_size: int  # the layout's: the backbone's own plus the FAST ids appended after it
    backbone_vocab: int
    width: int
    depth: int
    heads: int
    kv_heads: int
    head_dim: int
    expert_width: int
    image_size: int
    cameras: int = 4
    action_dim: int = 32
    horizon: int = 50
    hf_config: dict | None = None  # the snapshot's PaliGemmaConfig: a checkpoint rebuilds the model from it


def _hf_config(snapshot: Path, saved: dict | None = None):
    from transformers import PaliGemmaConfig

    if saved is not None:
        return PaliGemmaConfig.from_dict(saved)
    path = Path(snapshot)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a Hugging Face snapshot folder (config.json missing); download one with "
            "`huggingface-cli download google/paligemma-3b-pt-224 --local-dir DIR`"
        )
    cfg = PaliGemmaConfig.from_pretrained(path, local_files_only=True)
    if cfg.text_config.model_type != "gemma":
        raise ValueError(
            f"{path}: a {cfg.text_config.model_type!r} decoder; only PaliGemma 1 (a Gemma decoder) is supported"
        )
    return cfg


def load_backbone_config(snapshot: Path, vocab_size: int, expert_width: int | None = None) -> BackboneConfig:
    """The sizes of a snapshot, the expert's width (default half the backbone's, at least 64, a multiple
    of 16: at PaliGemma 3B's 2048 that is pi0's 300M Gemma expert, width 1024) and the layout's
    vocabulary."""
    cfg = _hf_config(snapshot)
    t = cfg.text_config
    if vocab_size < t.vocab_size:
        raise ValueError(f"vocabulary {vocab_size} is smaller than the backbone's own {t.vocab_size}")
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    width = expert_width or max(64, (t.hidden_size // 2) // 16 * 16)
    return BackboneConfig(
        str(Path(snapshot).resolve()),
        vocab_size,
        t.vocab_size,
        t.hidden_size,
        t.num_hidden_layers,
        t.num_attention_heads,
        t.num_key_value_heads,
        head_dim,
        width,
        cfg.vision_config.image_size,
        hf_config=json.loads(cfg.to_json_string(use_diff=False)),
    )


class _Images(nn.Module):
    """Camera slots -> image tokens of the decoder's width, each slot through SigLIP on its own."""

    def __init__(self, tower: nn.Module, projector: nn.Module, image_size: int, patch: int):
        super().__init__()
        self.tower, self.projector, self.image_size = tower, projector, image_size
        self.tokens_per_image = (image_size // patch) ** 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W, 3] uint8 -> [B, C * n, width]."""
        b, c = images.shape[:2]
        dtype = next(self.projector.parameters()).dtype
        x = images.flatten(0, 1).permute(0, 3, 1, 2).to(dtype) / 127.5 - 1.0
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        tokens = self.projector(self.tower(pixel_values=x).last_hidden_state)
        return tokens.reshape(b, c * self.tokens_per_image, -1)


def _expert_layers(cfg: BackboneConfig, eps: float) -> nn.ModuleList:
    from transformers import GemmaConfig
    from transformers.models.gemma.modeling_gemma import GemmaDecoderLayer

    gc = GemmaConfig(
        vocab_size=1,
        hidden_size=cfg.expert_width,
        intermediate_size=4 * cfg.expert_width,
        num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.head_dim,
        rms_norm_eps=eps,
        pad_token_id=None,  # a decoder without a vocabulary: no token ids to check
        bos_token_id=None,
        eos_token_id=None,
    )
    return nn.ModuleList(GemmaDecoderLayer(gc, i) for i in range(cfg.depth))


def _qkv(layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    from transformers.models.gemma.modeling_gemma import apply_rotary_pos_emb

    b, t, _ = x.shape
    h = layer.input_layernorm(x)
    att = layer.self_attn
    q, k, v = (
        proj(h).view(b, t, -1, att.head_dim).transpose(1, 2) for proj in (att.q_proj, att.k_proj, att.v_proj)
    )
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    return q, k, v


def _finish(layer, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    b, _, t, _ = attended.shape
    x = x + layer.self_attn.o_proj(attended.transpose(1, 2).reshape(b, t, -1))
    return x + layer.mlp(layer.post_attention_layernorm(x))


def _attend(q, k, v, mask, scale: float) -> torch.Tensor:
    groups = q.shape[1] // k.shape[1]
    if groups > 1:  # grouped key/value heads (PaliGemma's Gemma 2B: one)
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


class PaliGemmaVLA(nn.Module):
    def __init__(
        self,
        cfg: BackboneConfig,
        with_expert: bool = True,
        pretrained: bool = True,
        checkpointing: bool = False,
    ):
        """The backbone from `cfg.snapshot` (its weights when `pretrained`, else its architecture with
        random weights), grown to `cfg.vocab_size`, and a fresh expert."""
        super().__init__()
        from transformers import PaliGemmaForConditionalGeneration

        hf_cfg = _hf_config(Path(cfg.snapshot), None if pretrained else cfg.hf_config)
        if pretrained:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # the trainer's own lines only
            hf = PaliGemmaForConditionalGeneration.from_pretrained(  # fp32 master weights whatever the
                cfg.snapshot,
                local_files_only=True,
                dtype=torch.float32,  # files hold (bf16 autocasts)
            )
        else:
            hf = PaliGemmaForConditionalGeneration(hf_cfg)
        if cfg.vocab_size > hf_cfg.text_config.vocab_size:
            hf.resize_token_embeddings(cfg.vocab_size, mean_resizing=False)
        self.cfg = cfg
        self.with_expert = with_expert
        self.checkpointing = checkpointing
        lm = hf.model.language_model
        self.vit = _Images(
            hf.model.vision_tower,
            hf.model.multi_modal_projector,
            cfg.image_size,
            hf_cfg.vision_config.patch_size,
        )
        for name, p in self.vit.tower.named_parameters():  # SigLIP's pooling head: PaliGemma reads the
            if name.startswith("head.") or ".head." in name:  # patch tokens, never the pooled vector
                p.requires_grad_(False)
        self.embed, self.layers, self.norm, self.rotary = lm.embed_tokens, lm.layers, lm.norm, lm.rotary_emb
        self.lm_head = hf.lm_head
        eps = hf_cfg.text_config.rms_norm_eps
        self.action_expert = _expert_layers(cfg, eps)
        self.action_in = nn.Linear(cfg.action_dim, cfg.expert_width)
        self.time_mlp = nn.Sequential(nn.Linear(2 * cfg.expert_width, cfg.expert_width), nn.SiLU())
        self.action_norm = nn.RMSNorm(cfg.expert_width, eps=eps)
        self.action_out = nn.Linear(cfg.expert_width, cfg.action_dim)
        self.scale = 1.0 / math.sqrt(cfg.head_dim)

    def _layer(self, i: int, x, mask, cos, sin, a, a_cos, a_sin, expert_keys):
        layer = self.layers[i]
        q, k, v = _qkv(layer, x, cos, sin)
        x_new = _finish(layer, x, _attend(q, k, v, mask[:, None], self.scale))
        if a is None:
            return x_new, None
        expert = self.action_expert[i]
        qa, ka, va = _qkv(expert, a, a_cos, a_sin)
        keys, values = torch.cat([k.detach(), ka], dim=2), torch.cat([v.detach(), va], dim=2)
        out_a = _attend(qa, keys, values, expert_keys[:, None, None, :], self.scale)
        return x_new, _finish(expert, a, out_a)

    def forward(
        self,
        images: torch.Tensor,
        image_mask: torch.Tensor,
        prompt_ids: torch.Tensor,
        prompt_valid: torch.Tensor,
        target_ids: torch.Tensor,
        noisy_actions: torch.Tensor | None = None,
        time: torch.Tensor | None = None,
        expert_context: torch.Tensor | None = None,
        image_tokens: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits over the vocabulary at every target position [B, S, V], velocity [B, H, A] or None);
        the small model's contract (`trainer/model.py` `VLA.forward`)."""
        img = self.vit(images) if image_tokens is None else image_tokens
        img_valid = image_mask.repeat_interleave(self.vit.tokens_per_image, dim=1)
        prefix = torch.cat([img.to(self.embed.weight.dtype), self.embed(prompt_ids)], dim=1)
        prefix_valid = torch.cat([img_valid, prompt_valid], dim=1)
        n_prefix = prefix.shape[1]
        x = torch.cat([prefix, self.embed(target_ids)], dim=1)
        valid = torch.cat([prefix_valid, torch.ones_like(target_ids, dtype=torch.bool)], dim=1)
        mask = prefix_target_mask(n_prefix, target_ids.shape[1], valid)
        pos = valid.long().cumsum(dim=1) - 1  # padding takes no position
        cos, sin = self.rotary(x, pos)
        a = a_cos = a_sin = expert_keys = None
        if noisy_actions is not None and self.with_expert:
            a, a_pos, expert_keys = action_tokens(
                self, prefix_valid, target_ids, noisy_actions, time, expert_context
            )
            a_cos, a_sin = self.rotary(a, a_pos)
        for i in range(len(self.layers)):
            args = (i, x, mask, cos, sin, a, a_cos, a_sin, expert_keys)
            if self.checkpointing and self.training:
                x, a = checkpoint(self._layer, *args, use_reentrant=False)
            else:
                x, a = self._layer(*args)
        logits = self.lm_head(self.norm(x[:, n_prefix:]))
        velocity = None if a is None else self.action_out(self.action_norm(a))
        return logits, velocity
