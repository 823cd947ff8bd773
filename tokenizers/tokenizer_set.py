"""The tokenizer set: the text tokenizer, the FAST tokenizer and the vocabulary layout that gives each
kind of token its own id range, identified by the hash of its files (docs/design.md §4).

Sequences: [bos] prompt [sep] (target [sep]) ([action] fast [end_of_action]) [eos]; the loss covers
everything after the prompt's [sep]. `<locNNNN>` in a target become location ids, never text. A set for a
backbone (`layout.backbone`) gives the backbone's own ids (tokenizers/backbone.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from tokenizers import Tokenizer
from vlamix.tokenizers.fast import BPE_FILE, CONFIG_FILE, FastRangeError, FastTokenizer
from vlamix.tokenizers.vocab import LAYOUT_FILE, VocabLayout, write_tokenizer_set

__all__ = [
    "FAST_DIR",
    "SET_FILES",
    "TEXT_FILE",
    "TokenizerSet",
    "load_tokenizer_set",
]

TEXT_FILE = "text.json"
FAST_DIR = "fast"
SET_FILES = (LAYOUT_FILE, TEXT_FILE, f"{FAST_DIR}/{CONFIG_FILE}", f"{FAST_DIR}/{BPE_FILE}")
_LOC = re.compile(r"<loc(\d{4})>")


@dataclass(frozen=True)
class TokenizerSet:
    text: Tokenizer
    fast: FastTokenizer
    layout: VocabLayout

    @cached_property
    def ranges(self) -> dict:
        return self.layout.ranges()

    @cached_property
    def special_ids(self) -> dict[str, int]:
        return self.layout.special_ids()

    @property
    def vocab_size(self) -> int:
        """Ids the model's embedding must hold: one past the highest of any range."""
        return max(r[1] for r in self.ranges.values() if r)

    def special(self, name: str) -> int:
        return self.special_ids[name]

    def fast_ids(self, local: list[int]) -> list[int]:
        start = self.ranges["fast"][0]
        return [start + i for i in local]

    def encode_actions(self, chunk: np.ndarray, name: str) -> list[int]:
        """A normalized chunk [H, D] -> its FAST tokens as set ids. Coefficients outside the fitted range
        raise FastRangeError, its message led by `name` (the sample's key)."""
        try:
            (local,) = self.fast.encode(chunk[None])
        except FastRangeError as e:
            raise FastRangeError(f"{name}: {e}") from e
        return self.fast_ids(local)

    def encode_actions_batch(self, chunks: np.ndarray, names: list[str]) -> list[list[int]]:
        """`encode_actions` of every chunk [B, H, D] in one call (one DCT, one BPE batch): the same ids.
        The FastRangeError names the first failing chunk by its name and keeps its position (`first`)."""
        try:
            locals_ = self.fast.encode(chunks)
        except FastRangeError as e:
            raise FastRangeError(f"{names[e.first]}: {e}", e.first) from e
        return [self.fast_ids(local) for local in locals_]

    def decode_actions(self, ids: list[int], horizon: int, dim: int) -> tuple[np.ndarray, bool]:
        """FAST set ids -> (chunk [horizon, dim], valid); an invalid sequence gives NaN actions."""
        start = self.ranges["fast"][0]
        actions, valid = self.fast.decode([[int(i) - start for i in ids]], horizon, dim)
        return actions[0], bool(valid[0])

    def text_ids(self, text: str) -> list[int]:
        """Text (with any `<locNNNN>` tokens) -> set ids."""
        out: list[int] = []
        text_start, loc_start = self.ranges["text"][0], self.ranges["loc"][0]
        pos = 0
        for m in _LOC.finditer(text):
            if m.start() > pos:
                out += [text_start + i for i in self._encode(text[pos : m.start()])]
            out.append(loc_start + int(m.group(1)))
            pos = m.end()
        if pos < len(text):
            out += [text_start + i for i in self._encode(text[pos:])]
        return out

    def _encode(self, text: str) -> list[int]:
        return self.text.encode(text, add_special_tokens=False).ids  # a backbone's adds no <bos> of its own

    def decode(self, ids: list[int]) -> str:
        """Set ids -> readable text: text runs decoded, `<locNNNN>` for locations, special names, and
        FAST runs as `<fast xN>` (decode those with the FAST tokenizer: they are actions, not text). A
        backbone's own specials and locations are text to its tokenizer, which decodes them by name."""
        r = self.ranges
        names = {i: name for name, i in self.special_ids.items()}
        parts: list[str] = []
        run: list[int] = []
        fast = 0

        def flush() -> None:
            nonlocal run, fast
            if run:
                parts.append(self.text.decode(run, skip_special_tokens=False))
                run = []
            if fast:
                parts.append(f"<fast x{fast}>")
                fast = 0

        for i in ids:
            if r["fast"] and r["fast"][0] <= i < r["fast"][1]:
                if run:
                    flush()
                fast += 1
                continue
            if r["loc"][0] <= i < r["loc"][1]:  # before text: a backbone's locations lie inside its text
                flush()
                parts.append(f"<loc{i - r['loc'][0]:04d}>")
                continue
            if r["text"] and r["text"][0] <= i < r["text"][1]:
                if fast:
                    flush()
                run.append(i - r["text"][0])
                continue
            flush()
            parts.append(names.get(i, f"<out of range {i}>"))
        flush()
        return "".join(parts)

    def encode_sample(
        self, prompt: str, target: str | None, fast: list[int] | None
    ) -> tuple[list[int], list[bool]]:
        """(input_ids, loss_mask) of one sample; `fast` holds set ids (see fast_ids)."""
        prefix = [self.special("<bos>"), *self.text_ids(prompt), self.special("<sep>")]
        suffix: list[int] = []
        if target:
            suffix += [*self.text_ids(target), self.special("<sep>")]
        if fast is not None:
            suffix += [self.special("<action>"), *fast, self.special("<end_of_action>")]
        suffix.append(self.special("<eos>"))
        return prefix + suffix, [False] * len(prefix) + [True] * len(suffix)

    def save(self, parent: Path) -> tuple[str, str]:
        """Write into `parent/<sha256>/` (atomically); returns (folder name, sha256)."""
        files = {TEXT_FILE: (self.text.to_str(pretty=True) + "\n").encode()}
        files |= {f"{FAST_DIR}/{name}": data for name, data in self.fast.files().items()}
        return write_tokenizer_set(parent, self.layout, files)


def load_tokenizer_set(folder: str | Path) -> TokenizerSet:
    """Load the set in a local folder, checking that its files belong together. Each call reads the
    folder: load once and hand the set to what needs it. A set at a URL is fetched to a local folder by
    whoever holds the layout's store first (vlamix.shards.assets)."""
    folder = str(folder)
    if "://" in folder and not folder.startswith("file://"):
        raise ValueError(
            f"{folder}: load_tokenizer_set reads a local folder; fetch a remote set to one first "
            "(vlamix.shards.assets.fetch_tokenizer_set)"
        )
    path = Path(folder.removeprefix("file://"))
    for need in (LAYOUT_FILE, TEXT_FILE, f"{FAST_DIR}/fast.json"):
        if not (path / need).is_file():
            raise FileNotFoundError(f"{path}: not a tokenizer set ({need} is missing)")
    import json

    layout = VocabLayout.from_json(json.loads((path / LAYOUT_FILE).read_text()))
    text = Tokenizer.from_str((path / TEXT_FILE).read_text())
    fast = FastTokenizer.load(path / FAST_DIR)
    if layout.text != text.get_vocab_size() or layout.fast != fast.vocab_size:
        raise ValueError(f"{path}: {LAYOUT_FILE} does not match the tokenizers beside it")
    return TokenizerSet(text, fast, layout)
