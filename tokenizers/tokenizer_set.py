"""The tokenizer set: the text tokenizer, the FAST tokenizer and the vocabulary layout that gives each
kind of token its own id range, identified by the hash of its files (docs/design.md §4).

Sequences: [bos] prompt [sep] (target [sep]) ([action] fast [end_of_action]) [eos]; the loss covers
everything after the prompt's [sep]. `<locNNNN>` in a target become location ids, never text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tokenizers import Tokenizer
from vlamix.tokenizers.fast import BPE_FILE, CONFIG_FILE, FastTokenizer
from vlamix.tokenizers.vocab import (
    LAYOUT_FILE,
    SPECIALS,
    VocabLayout,
    hash_tokenizer_dir,
    write_tokenizer_set,
)

__all__ = [
    "FAST_DIR",
    "SET_FILES",
    "TEXT_FILE",
    "TokenizerSet",
    "cache_dir",
    "fetch_tokenizer_set",
    "load_tokenizer_set",
]

TEXT_FILE = "text.json"
FAST_DIR = "fast"
SET_FILES = (LAYOUT_FILE, TEXT_FILE, f"{FAST_DIR}/{CONFIG_FILE}", f"{FAST_DIR}/{BPE_FILE}")
_LOC = re.compile(r"<loc(\d{4})>")
_SPECIAL = {name: i for i, name in enumerate(SPECIALS)}


@dataclass(frozen=True)
class TokenizerSet:
    text: Tokenizer
    fast: FastTokenizer
    layout: VocabLayout

    @property
    def ranges(self) -> dict:
        return self.layout.ranges()

    def special(self, name: str) -> int:
        return _SPECIAL[name]

    def fast_ids(self, local: list[int]) -> list[int]:
        start = self.ranges["fast"][0]
        return [start + i for i in local]

    def text_ids(self, text: str) -> list[int]:
        """Text (with any `<locNNNN>` tokens) -> set ids."""
        out: list[int] = []
        text_start, loc_start = self.ranges["text"][0], self.ranges["loc"][0]
        pos = 0
        for m in _LOC.finditer(text):
            if m.start() > pos:
                out += [text_start + i for i in self.text.encode(text[pos : m.start()]).ids]
            out.append(loc_start + int(m.group(1)))
            pos = m.end()
        if pos < len(text):
            out += [text_start + i for i in self.text.encode(text[pos:]).ids]
        return out

    def decode(self, ids: list[int]) -> str:
        """Set ids -> readable text: text runs decoded, `<locNNNN>` for locations, special names, and
        FAST runs as `<fast xN>` (decode those with the FAST tokenizer: they are actions, not text)."""
        r = self.ranges
        parts: list[str] = []
        run: list[int] = []
        fast = 0

        def flush() -> None:
            nonlocal run, fast
            if run:
                parts.append(self.text.decode(run))
                run = []
            if fast:
                parts.append(f"<fast x{fast}>")
                fast = 0

        for i in ids:
            if r["text"] and r["text"][0] <= i < r["text"][1]:
                if fast:
                    flush()
                run.append(i - r["text"][0])
                continue
            if r["fast"] and r["fast"][0] <= i < r["fast"][1]:
                if run:
                    flush()
                fast += 1
                continue
            flush()
            if r["loc"][0] <= i < r["loc"][1]:
                parts.append(f"<loc{i - r['loc'][0]:04d}>")
            elif 0 <= i < len(self.layout.specials):
                parts.append(self.layout.specials[i])
            else:
                parts.append(f"<out of range {i}>")
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


def fetch_tokenizer_set(url: str, cache_root: Path) -> Path:
    """A set at a URL (`.../tokenizers/<sha256>`) copied into `cache_root/<sha256>/`, checked against
    its hash (once: a verified copy is reused)."""
    import os
    import shutil
    import tempfile

    from vlamix.shards.store import Store

    digest = url.rstrip("/").rsplit("/", 1)[-1]
    target = cache_root / digest
    if target.is_dir() and hash_tokenizer_dir(target) == digest:
        return target
    store = Store(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target.parent))
    try:
        for name in SET_FILES:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(store.read_bytes(name))
        got = hash_tokenizer_dir(tmp)
        if got != digest:
            raise ValueError(f"{url}: the tokenizer set's files hash to {got}, not {digest}")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def cache_dir() -> Path:
    """Where fetched assets live: `$VLAMIX_CACHE`, else `$XDG_CACHE_HOME/vlamix`, else `~/.cache/vlamix`."""
    import os

    if os.environ.get("VLAMIX_CACHE"):
        return Path(os.environ["VLAMIX_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vlamix"


@cache
def load_tokenizer_set(folder: str) -> TokenizerSet:
    """Load a set folder, or a set at a URL (fetched into the cache first); cached per process: Beam and
    Ray workers load it once."""
    if "://" in folder and not folder.startswith("file://"):
        folder = str(fetch_tokenizer_set(folder, cache_dir() / "tokenizers"))
    path = Path(folder.removeprefix("file://"))
    for need in (LAYOUT_FILE, TEXT_FILE, f"{FAST_DIR}/fast.json"):
        if not (path / need).is_file():
            raise FileNotFoundError(f"{path}: not a tokenizer set ({need} is missing)")
    import json

    d = json.loads((path / LAYOUT_FILE).read_text())
    layout = VocabLayout(tuple(d["specials"]), d["text"], d["loc"], d["fast"], d.get("components", {}))
    text = Tokenizer.from_str((path / TEXT_FILE).read_text())
    fast = FastTokenizer.load(path / FAST_DIR)
    if layout.text != text.get_vocab_size() or layout.fast != fast.vocab_size:
        raise ValueError(f"{path}: {LAYOUT_FILE} does not match the tokenizers beside it")
    return TokenizerSet(text, fast, layout)
