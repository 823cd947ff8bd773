"""Model sizes and token budgets: the named presets `tiny` and `base`, or a YAML file that starts from
one and changes some fields (`{preset: tiny, depth: 3}`), validated on load.

Token budget of one example = cameras x (image_size / patch)^2 image tokens + `max_prompt` prompt tokens
+ `max_targets` target tokens. Truncation rule: a longer prompt keeps its first `max_prompt` tokens (the
task text comes first, so what is cut is the tail of the state bins); longer targets keep their first
`max_targets` tokens, so the loss never sees the tail (subtask text is never cut before FAST tokens are).
Every truncation is counted in metrics.csv (`truncated`), never silent."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from vlamix.config import ConfigError, from_mapping, load_yaml
from vlamix.trainer.model import ModelConfig

__all__ = ["PRESETS", "RunConfig", "load_config"]


@dataclass(frozen=True)
class RunConfig:
    """What a run's model is: its size and its token budget. Saved in every checkpoint."""

    name: str
    width: int
    depth: int
    heads: int
    expert_width: int
    vit_width: int
    vit_depth: int
    vit_heads: int
    patch: int
    max_prompt: int = 96
    max_targets: int = 128
    lr: float = 3e-4  # the default peak learning rate of this size (--lr overrides)

    def check(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, int | float) and not v > 0:
                raise ValueError(f"{f.name} must be positive, got {v}")
        self.model(vocab_size=2).check()

    def model(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(
            vocab_size=vocab_size,
            width=self.width,
            depth=self.depth,
            heads=self.heads,
            expert_width=self.expert_width,
            vit_width=self.vit_width,
            vit_depth=self.vit_depth,
            vit_heads=self.vit_heads,
            patch=self.patch,
        )

    @property
    def token_budget(self) -> int:
        m = self.model(vocab_size=2)
        return m.cameras * (m.image_size // m.patch) ** 2 + self.max_prompt + self.max_targets


PRESETS = {
    # 2 CPU cores, minutes: ~0.8 M parameters, 16 patches of 56 px per camera
    "tiny": RunConfig("tiny", 64, 2, 4, 32, 32, 1, 4, 56, lr=3e-3),
    # one GPU: a ViT-B/16-sized encoder (196 patches per camera) and a 12-layer, 768-wide decoder
    "base": RunConfig("base", 768, 12, 12, 384, 768, 12, 12, 16),
}


def load_config(name_or_path: str | Path) -> RunConfig:
    """A preset by name, or a YAML file `{preset: NAME, <field>: value, ...}`."""
    text = str(name_or_path)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        raise ConfigError(f"--config {text!r}: give a preset ({', '.join(PRESETS)}) or a YAML file")
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping like {{preset: tiny, depth: 3}}")
    base = data.pop("preset", "tiny")
    if base not in PRESETS:
        raise ConfigError(f"{path}: preset {base!r} is not one of {list(PRESETS)}")
    merged = {**dataclasses.asdict(PRESETS[base]), "name": path.stem, **data}
    return from_mapping(RunConfig, merged, str(path))
