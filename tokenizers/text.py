"""The text tokenizer: a byte-level BPE trained offline on the ingest's own text (tasks, subtasks,
instructions, captions, questions, answers and the prompt template), or any Hugging Face `tokenizer.json`
a user brings (e.g. PaliGemma's, downloaded by hand). BPE, because its training is deterministic here."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

__all__ = ["TEMPLATE_TEXT", "train_text_tokenizer"]

# Text every prompt uses, so the template and the state bins always have compact tokens.
TEMPLATE_TEXT = [
    "Task: , Control: joint, State: ;\nAction: ",
    "Control: ee",
    "caption en",
    "answer en",
    "detect",
] + [" ".join(str(b) for b in range(k, 256, 7)) for k in range(7)]


def train_text_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> Tokenizer:
    """Byte-level BPE over `texts` (sorted and deduplicated here, so the result does not depend on order)."""
    corpus = sorted(set(TEMPLATE_TEXT) | {t for t in texts if t})
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    return tok
