"""The vocabulary layout: disjoint id ranges for special, text, location and FAST tokens (docs/design.md §4),
and the tokenizer-set folder that carries it, named by the hash of its files. A layout targeting a
pretrained backbone (`backbone`, tokenizers/backbone.py) keeps the backbone's ids for its text, locations
and the specials it has, and appends the rest after the backbone's vocabulary (design §20)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vlamix.tokenizers.backbone import BackboneVocab

__all__ = ["LAYOUT_FILE", "VocabLayout", "hash_tokenizer_dir", "write_tokenizer_set"]

LAYOUT_FILE = "vocab_layout.json"
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>", "<sep>", "<image>", "<action>", "<end_of_action>")
LOC_TOKENS = 1024


@dataclass(frozen=True)
class VocabLayout:
    """Sizes of each range; ids are assigned in this order, so no two kinds of token ever share an id.
    `text` and `fast` are None until their tokenizers are fitted and added to the set."""

    specials: tuple[str, ...] = SPECIALS
    text: int | None = None
    loc: int = LOC_TOKENS
    fast: int | None = None
    components: dict[str, str] = field(default_factory=dict)  # kind -> file in the set
    backbone: BackboneVocab | None = None  # the vocabulary targeted; None: our own, from id 0

    def appended(self) -> tuple[str, ...]:
        """The specials that get ids of their own: all of ours, or those a backbone lacks."""
        have = self.backbone.specials if self.backbone else {}
        return tuple(s for s in self.specials if s not in have)

    def special_ids(self) -> dict[str, int]:
        start = self.backbone.vocab if self.backbone else 0
        own = {name: start + i for i, name in enumerate(self.appended())}
        return own if self.backbone is None else {**self.backbone.specials, **own}

    def ranges(self) -> dict[str, list[int] | None]:
        if self.backbone is not None:
            return self._backbone_ranges(self.backbone)
        start, out = 0, {}
        for name, size in (
            ("specials", len(self.specials)),
            ("text", self.text),
            ("loc", self.loc),
            ("fast", self.fast),
        ):
            if size is None:
                out[name] = None
                continue
            out[name] = [start, start + size]
            start += size
        return out

    def _backbone_ranges(self, b: BackboneVocab) -> dict[str, list[int] | None]:
        """text: the backbone's whole table (its specials and locations inside); ours after it."""
        extra = len(self.appended())
        fast = None if self.fast is None else [b.vocab + extra, b.vocab + extra + self.fast]
        return {
            "specials": [b.vocab, b.vocab + extra],
            "text": [0, b.vocab],
            "loc": [b.loc_start, b.loc_start + self.loc],
            "fast": fast,
        }

    def to_json(self) -> str:
        d = {**asdict(self), "specials": list(self.specials), "ranges": self.ranges(), "version": 1}
        d.pop("backbone")
        if self.backbone is not None:  # a set for our own vocabulary keeps its bytes (and hash)
            d |= {"backbone": self.backbone.to_json(), "special_ids": self.special_ids(), "version": 2}
        return json.dumps(d, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, d: dict) -> VocabLayout:
        backbone = BackboneVocab.from_json(d["backbone"]) if d.get("backbone") else None
        return cls(tuple(d["specials"]), d["text"], d["loc"], d["fast"], d.get("components", {}), backbone)


def hash_tokenizer_dir(folder: Path) -> str:
    """sha256 over the sorted file names and contents of a tokenizer set (the set's identity)."""
    h = hashlib.sha256()
    for p in sorted(q for q in Path(folder).rglob("*") if q.is_file()):
        h.update(p.relative_to(folder).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def write_tokenizer_set(
    parent: Path, layout: VocabLayout, files: dict[str, bytes] | None = None
) -> tuple[str, str]:
    """Write the set into `parent/<sha256>/` atomically; returns (folder name, sha256). An existing
    folder of the same hash holds the same bytes and is kept."""
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tok-", dir=parent))
    try:
        (tmp / LAYOUT_FILE).write_text(layout.to_json())
        for name, data in (files or {}).items():  # names may hold one folder level: fast/fast.json
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        digest = hash_tokenizer_dir(tmp)
        final = parent / digest
        if final.exists():
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
        return digest, digest
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
