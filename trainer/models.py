"""Which model a run trains, and the same model again from a checkpoint: the small VLA at a preset's sizes
(trainer/model.py), or the VLA on a pretrained PaliGemma backbone (trainer/paligemma.py, `--backbone
DIR`). A checkpoint's state.json `model` holds the sizes (and a backbone's whole PaliGemma config), so
resuming and predicting need the checkpoint only, never the snapshot folder again."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from vlamix.tokenizers.backbone import BackboneVocab, read_backbone_vocab
from vlamix.trainer.model import VLA, ModelConfig
from vlamix.trainer.paligemma import BackboneConfig, PaliGemmaVLA, load_backbone_config

__all__ = ["BACKBONE_LR", "backbone_config", "is_backbone", "model_from_state"]

# Peak learning rate of a run on a pretrained backbone unless --lr is given (openpi fine-tunes
# PaliGemma-based pi0 at 2.5e-5; the tiny presets' 3e-3 would wreck pretrained weights).
BACKBONE_LR = 5e-5


def is_backbone(model: dict) -> bool:
    """Whether a checkpoint's `model` sizes are a backbone model's."""
    return "snapshot" in model


def model_from_state(model: dict, with_expert: bool, checkpointing: bool = False) -> nn.Module:
    """The architecture a checkpoint's `model` entry describes, with random weights (load them next)."""
    if is_backbone(model):
        return PaliGemmaVLA(
            BackboneConfig(**model), with_expert, pretrained=False, checkpointing=checkpointing
        )
    return VLA(ModelConfig(**model), with_expert=with_expert)


def _describe(target: BackboneVocab | None) -> str:
    if target is None:
        return "vlamix's own vocabulary (a text tokenizer trained at ingest)"
    of = f" {target.name!r}" if target.name else ""
    return f"the backbone{of} vocabulary of {target.vocab:,} (tokenizer.json {target.tokenizer_sha256[:12]})"


def backbone_config(
    snapshot: Path, vocab: int, layout_target: BackboneVocab | None, expert_width: int | None
) -> BackboneConfig:
    """The backbone model's sizes for a run on layouts whose tokenizer set targets `layout_target`;
    one line refusing layouts built for another vocabulary, saying how to rebuild them."""
    _, mine = read_backbone_vocab(snapshot)
    if layout_target is None or not layout_target.same_vocabulary(mine):
        raise ValueError(
            f"--backbone {snapshot}: the mixture's layouts carry token ids for {_describe(layout_target)}, "
            f"not for {_describe(mine)}; rebuild them for it: vlamix ingest --backbone {snapshot} "
            "--sources ... --out ..."
        )
    return load_backbone_config(snapshot, vocab, expert_width)
