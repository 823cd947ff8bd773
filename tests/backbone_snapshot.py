"""Tiny PaliGemma snapshots for tests (no network): random weights saved with `save_pretrained`, and a
small `tokenizer.json` with the real vocabulary's shape (Gemma's `<pad> <eos> <bos> <unk>` at 0-3, text,
1024 `<locNNNN>`, `<segNNN>`, `<image>`, a `<bos>` added by its post-processor, the embedding table
padded past the tokenizer to a multiple of 64 as google/paligemma-3b-pt-224's 257,216 rows are)."""

from __future__ import annotations

from pathlib import Path

import torch

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SEGMENTS = 16  # PaliGemma has 128 <segNNN>; a few keep the shape
TEXT = [
    "Task: , Control: joint, State: ;\nAction: ",
    "pick up the cube and place it in the bowl",
    "open the drawer, grasp the object, move to the left",
    "caption en answer en detect the red block",
] + [" ".join(str(b) for b in range(k, 256, 7)) for k in range(7)]


def tiny_tokenizer(text_size: int = 400) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=text_size,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
    )
    tok.train_from_iterator(TEXT, trainer=trainer)
    tok.add_tokens([AddedToken(f"<loc{n:04d}>", normalized=False) for n in range(1024)])
    tok.add_tokens([AddedToken(f"<seg{n:03d}>", normalized=False) for n in range(SEGMENTS)])
    tok.add_special_tokens(["<image>"])
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos)])
    return tok


def tiny_paligemma(folder: Path, vocab: int = 40, image_token: int | None = None) -> None:
    """A PaliGemma snapshot with tiny sizes and random weights (SigLIP 28x28, patch 14; Gemma 2 layers,
    4 query heads over 1 key/value head as PaliGemma's Gemma 2B has), saved by `save_pretrained`."""
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

    cfg = PaliGemmaConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 28, "patch_size": 14, "projection_dim": 48},
        text_config={"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 12, "vocab_size": vocab},
        image_token_index=vocab - 1 if image_token is None else image_token,
        projection_dim=48,
    )  # fmt: skip
    torch.manual_seed(0)
    PaliGemmaForConditionalGeneration(cfg).save_pretrained(folder)


def tiny_snapshot(folder: Path) -> Path:
    """The snapshot `--backbone DIR` takes: tiny weights, tokenizer.json and tokenizer_config.json."""
    import json

    tok = tiny_tokenizer()
    rows = -(-tok.get_vocab_size() // 64) * 64  # padded as the real embedding table is
    tiny_paligemma(folder, vocab=rows, image_token=tok.token_to_id("<image>"))
    tok.save(str(folder / "tokenizer.json"))
    config = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config | {"model_max_length": 512}) + "\n")
    return folder
