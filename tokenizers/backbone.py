"""A pretrained backbone's vocabulary as the target of a tokenizer set (docs/design.md §20).

Shards built for a backbone carry its own token ids: the snapshot's `tokenizer.json` is the text part
(ids as it gives them), `<locNNNN>` are its own 1024 location tokens (PaliGemma's `<loc0000>` ..
`<loc1023>`), and each of our specials is its token of the same name where it has one (`<pad>`, `<bos>`,
`<eos>`, `<unk>`, `<image>`), `<sep>` its newline (PaliGemma's prefix/suffix separator). The specials it
lacks (`<action>`, `<end_of_action>`) and the FAST ids are appended after its whole embedding table
(`text_config.vocab_size`, which PaliGemma pads past its tokenizer), so no string and no location can
produce them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer

__all__ = ["TOKENIZER_FILE", "BackboneVocab", "read_backbone_vocab"]

TOKENIZER_FILE = "tokenizer.json"
LOC_TOKENS = 1024
_SAME_NAME = ("<pad>", "<bos>", "<eos>", "<unk>", "<image>", "<action>", "<end_of_action>")
_SEPARATOR = "\n"


@dataclass(frozen=True)
class BackboneVocab:
    """Which vocabulary a tokenizer set targets; two sets target the same backbone when these are equal."""

    name: str = field(compare=False)  # the snapshot folder's name, for messages only: not saved (the
    # set's hash must not depend on where a snapshot was downloaded to)
    vocab: int  # rows of its embedding table: ids from here on are ours
    tokenizer_sha256: str  # of its tokenizer.json
    loc_start: int  # the id of <loc0000>
    specials: dict[str, int]  # our specials it has: {name: its id}

    def to_json(self) -> dict:
        return {
            "vocab": self.vocab,
            "tokenizer_sha256": self.tokenizer_sha256,
            "loc_start": self.loc_start,
            "specials": dict(sorted(self.specials.items())),
        }

    @classmethod
    def from_json(cls, d: dict) -> BackboneVocab:
        return cls("", int(d["vocab"]), d["tokenizer_sha256"], int(d["loc_start"]), dict(d["specials"]))

    def same_vocabulary(self, other: BackboneVocab) -> bool:
        return (self.vocab, self.tokenizer_sha256, self.loc_start, self.specials) == (
            other.vocab,
            other.tokenizer_sha256,
            other.loc_start,
            other.specials,
        )


def _embedding_rows(snapshot: Path) -> int | None:
    """`text_config.vocab_size` of the snapshot's config.json (None when it has none)."""
    if not (snapshot / "config.json").is_file():
        return None
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(snapshot, local_files_only=True)
    return int(getattr(cfg, "text_config", cfg).vocab_size)


def read_backbone_vocab(snapshot: Path) -> tuple[Tokenizer, BackboneVocab]:
    """The snapshot folder's text tokenizer and what the tokenizer set needs of its vocabulary; one-line
    errors for a folder without tokenizer.json or a tokenizer without PaliGemma's location tokens."""
    snapshot = Path(snapshot)
    path = snapshot / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{snapshot}: no {TOKENIZER_FILE}: --backbone takes a Hugging Face snapshot folder "
            "(`huggingface-cli download google/paligemma-3b-pt-224 --local-dir DIR`)"
        )
    data = path.read_bytes()
    text = Tokenizer.from_str(data.decode())
    loc_start = text.token_to_id("<loc0000>")
    locs = [text.token_to_id(f"<loc{n:04d}>") for n in range(LOC_TOKENS)]
    if loc_start is None or locs != list(range(loc_start, loc_start + LOC_TOKENS)):
        raise ValueError(
            f"{path}: no consecutive <loc0000> .. <loc1023> tokens (PaliGemma's location tokens); "
            "only PaliGemma's tokenizer can be a backbone's"
        )
    specials = {name: i for name in _SAME_NAME if (i := text.token_to_id(name)) is not None}
    newline = text.encode(_SEPARATOR, add_special_tokens=False).ids
    if len(newline) == 1:
        specials["<sep>"] = newline[0]
    rows = _embedding_rows(snapshot)
    if rows is None:
        raise FileNotFoundError(
            f"{snapshot}: no config.json: the backbone's embedding table size is read from it (FAST ids "
            "go after the whole table); give the whole snapshot folder"
        )
    vocab = max(text.get_vocab_size(), rows)
    digest = hashlib.sha256(data).hexdigest()
    return text, BackboneVocab(snapshot.resolve().name, vocab, digest, loc_start, specials)
