"""A small PaliGemma-like VLA with a pi0-style action expert, readable top to bottom.

    images --ViT--> image tokens \
    prompt ids --embed----------> prefix  (bidirectional among themselves)
    target ids --embed----------> targets (causal; see the prefix)            -> logits -> CE
    noisy actions + time -------> action tokens (the expert's own weights)    -> velocity -> flow loss

The backbone and the action expert are a mixture of transformers: same depth and head size, separate
weights, attention shared layer by layer. Who sees whom (True = may attend):

                 prefix   subtask text   FAST targets   actions
    prefix        yes         no             no            no
    targets       yes      causal         causal           no
    actions       yes        yes             no           yes

Action tokens see the target text before the `<action>` token (the subtask of an HL sample, what
hierarchical inference generates first) but never the FAST tokens, which would leak the answer.
Knowledge insulation (arXiv 2505.23705): the expert reads the backbone's keys and values through a
stop-gradient, so the flow loss trains the expert only. Positions are rotary (RoPE) and count valid
tokens only, so padding never changes a sample's outputs; action tokens take the positions that follow
the text they see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "VLA",
    "ModelConfig",
    "action_tokens",
    "flow_errors",
    "flow_loss",
    "prefix_target_mask",
    "sample_actions",
    "sample_time",
]


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    width: int = 128  # backbone
    depth: int = 4
    heads: int = 4
    expert_width: int = 64  # the action expert is narrower (pi0: 1024 vs 2048)
    vit_width: int = 128
    vit_depth: int = 2
    vit_heads: int = 4
    patch: int = 32
    image_size: int = 224
    cameras: int = 4
    action_dim: int = 32
    horizon: int = 50

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def check(self) -> None:
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"width {self.width} must split into {self.heads} heads of an even size")
        if self.vit_width % self.vit_heads:
            raise ValueError(f"vit_width {self.vit_width} must split into {self.vit_heads} heads")
        if self.image_size % self.patch:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch {self.patch}")


def prefix_target_mask(n_prefix: int, n_target: int, key_valid: torch.Tensor) -> torch.Tensor:
    """[B, T, T] bool, True = may attend, for T = prefix + targets: the prefix attends to the whole
    prefix (bidirectional), target i to the prefix and to targets <= i; `key_valid` [B, T] drops keys
    (absent cameras, padding)."""
    t = n_prefix + n_target
    allowed = torch.zeros(t, t, dtype=torch.bool, device=key_valid.device)
    allowed[:, :n_prefix] = True
    allowed[n_prefix:, n_prefix:] = torch.ones(
        n_target, n_target, dtype=torch.bool, device=key_valid.device
    ).tril()
    allowed = allowed[None] & key_valid[:, None, :]
    return allowed | torch.eye(t, dtype=torch.bool, device=key_valid.device)[None]  # a row never empty


def rope(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of x [B, heads, T, D] at integer positions pos [B, T]."""
    half = x.shape[-1] // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = (pos[:, None, :, None].float() * freqs).to(x.dtype)  # [B, 1, T, half]
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class MLP(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Stream(nn.Module):
    """One stream's weights in one layer: norms, q/k/v/o projections and MLP."""

    def __init__(self, width: int, cfg: ModelConfig):
        super().__init__()
        inner = cfg.heads * cfg.head_dim
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.out, self.mlp = nn.Linear(width, 3 * inner), nn.Linear(inner, width), MLP(width)
        self.heads, self.head_dim = cfg.heads, cfg.head_dim

    def qkv_heads(
        self, x: torch.Tensor, pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        q, k, v = (
            z.view(b, t, self.heads, self.head_dim).transpose(1, 2)
            for z in self.qkv(self.norm1(x)).split(self.heads * self.head_dim, dim=-1)
        )
        return rope(q, pos), rope(k, pos), v

    def finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        b, _, t, _ = attended.shape
        x = x + self.out(attended.transpose(1, 2).reshape(b, t, -1))
        return x + self.mlp(self.norm2(x))


class Layer(nn.Module):
    """Backbone and expert streams sharing attention. Backbone tokens never see action tokens; action
    tokens see what `expert_keys` allows of the backbone's (detached: knowledge insulation) and each
    other."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.backbone = Stream(cfg.width, cfg)
        self.expert = Stream(cfg.expert_width, cfg)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,  # [B, T, T]
        pos: torch.Tensor,  # [B, T]
        a: torch.Tensor | None,
        a_pos: torch.Tensor | None,  # [B, H]
        expert_keys: torch.Tensor | None,  # [B, T + H] bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        q, k, v = self.backbone.qkv_heads(x, pos)
        x_new = self.backbone.finish(x, F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None]))
        if a is None:
            return x_new, None
        qa, ka, va = self.expert.qkv_heads(a, a_pos)
        keys, values = torch.cat([k.detach(), ka], dim=2), torch.cat([v.detach(), va], dim=2)
        out_a = F.scaled_dot_product_attention(qa, keys, values, attn_mask=expert_keys[:, None, None, :])
        return x_new, self.expert.finish(a, out_a)


class ViT(nn.Module):
    """Patches of each camera image -> tokens of the backbone's width."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        n = (cfg.image_size // cfg.patch) ** 2
        self.patch = nn.Conv2d(3, cfg.vit_width, cfg.patch, cfg.patch)
        self.pos = nn.Parameter(torch.randn(1, n, cfg.vit_width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.vit_width, cfg.vit_heads, 4 * cfg.vit_width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.vit_depth, enable_nested_tensor=False)
        self.proj = nn.Linear(cfg.vit_width, cfg.width)
        self.tokens_per_image = n

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W, 3] uint8 (the batch's images as decoded) -> [B, C * n, width]. They become
        [-1, 1] floats here, on the model's device: the loader ships a quarter of the bytes."""
        b, c = images.shape[:2]
        x = pixels_to_unit(images.flatten(0, 1), self.patch.weight.dtype)
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        return self.proj(self.blocks(x)).reshape(b, c * self.tokens_per_image, -1)


def pixels_to_unit(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[N, H, W, 3] uint8 -> [N, 3, H, W] in [-1, 1] (x / 127.5 - 1), the model's input range."""
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 [..., H, W, 3] as the loader decodes them, not {images.dtype}")
    return images.permute(0, 3, 1, 2).to(dtype) / 127.5 - 1.0


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angles = t[:, None] * freqs[None] * 1000.0
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class VLA(nn.Module):
    def __init__(self, cfg: ModelConfig, with_expert: bool = True):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        self.vit = ViT(cfg)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.width)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.lm_head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        self.with_expert = with_expert
        self.action_in = nn.Linear(cfg.action_dim, cfg.expert_width)
        self.time_mlp = nn.Sequential(nn.Linear(2 * cfg.expert_width, cfg.expert_width), nn.SiLU())
        self.action_norm = nn.LayerNorm(cfg.expert_width)
        self.action_out = nn.Linear(cfg.expert_width, cfg.action_dim)

    def forward(
        self,
        images: torch.Tensor,  # [B, C, 3, H, W]
        image_mask: torch.Tensor,  # [B, C] bool: camera present
        prompt_ids: torch.Tensor,  # [B, P]
        prompt_valid: torch.Tensor,  # [B, P] bool
        target_ids: torch.Tensor,  # [B, S]
        noisy_actions: torch.Tensor | None = None,  # [B, H, A]
        time: torch.Tensor | None = None,  # [B]
        expert_context: torch.Tensor | None = None,  # [B, S] bool: targets the expert sees (subtask text)
        image_tokens: torch.Tensor | None = None,  # self.vit(images), when the caller has it already
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits over the vocabulary at every target position [B, S, V], velocity [B, H, A] or None)."""
        img = self.vit(images) if image_tokens is None else image_tokens
        img_valid = image_mask.repeat_interleave(self.vit.tokens_per_image, dim=1)
        prefix = torch.cat([img, self.embed(prompt_ids)], dim=1)
        prefix_valid = torch.cat([img_valid, prompt_valid], dim=1)
        n_prefix = prefix.shape[1]
        x = torch.cat([prefix, self.embed(target_ids)], dim=1)
        valid = torch.cat([prefix_valid, torch.ones_like(target_ids, dtype=torch.bool)], dim=1)
        mask = prefix_target_mask(n_prefix, target_ids.shape[1], valid)
        pos = valid.long().cumsum(dim=1) - 1  # padding takes no position
        a = a_pos = expert_keys = None
        if noisy_actions is not None and self.with_expert:
            a, a_pos, expert_keys = action_tokens(
                self, prefix_valid, target_ids, noisy_actions, time, expert_context
            )
        for layer in self.layers:
            x, a = layer(x, mask, pos, a, a_pos, expert_keys)
        logits = self.lm_head(self.norm(x[:, n_prefix:]))
        velocity = None if a is None else self.action_out(self.action_norm(a))
        return logits, velocity


def action_tokens(
    model: nn.Module,
    prefix_valid: torch.Tensor,  # [B, T_prefix] bool
    target_ids: torch.Tensor,  # [B, S]
    noisy_actions: torch.Tensor,  # [B, H, A]
    time: torch.Tensor | None,  # [B]
    expert_context: torch.Tensor | None,  # [B, S] bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The expert's input tokens [B, H, width] (noisy actions and the time embedding through the model's
    `action_in` and `time_mlp`), their positions [B, H] (after the text they see) and the keys they may
    attend [B, T + H] (the prefix, the subtask text, each other): shared by every VLA of the trainer."""
    if expert_context is None:
        expert_context = torch.zeros_like(target_ids, dtype=torch.bool)
    h = noisy_actions.shape[1]
    seen = torch.cat([prefix_valid, expert_context], dim=1)
    expert_keys = torch.cat([seen, seen.new_ones(seen.shape[0], h)], dim=1)
    a_pos = seen.long().sum(dim=1, keepdim=True) + torch.arange(h, device=seen.device)[None]
    a = model.action_in(noisy_actions)
    temb = timestep_embedding(time, model.cfg.expert_width)[:, None].expand(-1, h, -1)
    return model.time_mlp(torch.cat([a, temb], dim=-1)), a_pos, expert_keys


@torch.no_grad()
def sample_actions(model: VLA, inputs: dict, noise: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Integrate the flow from noise (t = 1) to actions (t = 0) in `steps` Euler steps (pi0's sampler).
    `inputs`: the model's keyword arguments without noisy_actions and time."""
    x, dt = noise, -1.0 / steps
    if "image_tokens" not in inputs:
        inputs = {**inputs, "image_tokens": model.vit(inputs["images"])}  # the same at every step
    for i in range(steps):
        t = torch.full((noise.shape[0],), 1.0 + i * dt, device=noise.device)
        _, v = model(**inputs, noisy_actions=x, time=t)
        x = x + dt * v
    return x


def sample_time(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flow-matching time t ~ Beta(1.5, 1) * 0.999 + 0.001 (openpi), by inverse transform: Beta(1.5, 1)
    has CDF t**1.5, so t = u**(2/3)."""
    u = torch.rand(n, generator=generator)
    return u.pow(2.0 / 3.0) * 0.999 + 0.001


def flow_errors(
    velocity: torch.Tensor, target: torch.Tensor, is_pad: torch.Tensor, dim_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of squared errors per row [B], real elements per row [B]) over real steps (is_pad False) and
    real dims (dim_mask True) only."""
    keep = (~is_pad)[:, :, None] & dim_mask[:, None, :]
    return ((velocity - target).pow(2) * keep).sum(dim=(1, 2)), keep.sum(dim=(1, 2))


def flow_loss(
    velocity: torch.Tensor, target: torch.Tensor, is_pad: torch.Tensor, dim_mask: torch.Tensor
) -> torch.Tensor:
    """Mean squared error over real steps (is_pad False) and real dims (dim_mask True) only."""
    sums, counts = flow_errors(velocity, target, is_pad, dim_mask)
    return sums.sum() / counts.sum().clamp(min=1)
