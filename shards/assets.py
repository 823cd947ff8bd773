"""A layout's small assets on this machine: the tokenizer set (fetched once into a cache named by its
hash and verified against it) and the embodiment specs, from a local folder or any URL."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from vlamix.schemas.embodiment import Embodiment, embodiment_from_text
from vlamix.shards.store import Store
from vlamix.tokenizers.fast import BPE_FILE, CONFIG_FILE
from vlamix.tokenizers.tokenizer_set import FAST_DIR, TEXT_FILE
from vlamix.tokenizers.vocab import LAYOUT_FILE, hash_tokenizer_dir

__all__ = ["SET_FILES", "cache_dir", "embodiment_of", "tokenizer_dir"]

SET_FILES = (LAYOUT_FILE, TEXT_FILE, f"{FAST_DIR}/{CONFIG_FILE}", f"{FAST_DIR}/{BPE_FILE}")


def cache_dir() -> Path:
    """`$VLAMIX_CACHE`, else `$XDG_CACHE_HOME/vlamix`, else `~/.cache/vlamix`."""
    if os.environ.get("VLAMIX_CACHE"):
        return Path(os.environ["VLAMIX_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vlamix"


def tokenizer_dir(store: Store, manifest: dict) -> str:
    """A local folder holding the layout's tokenizer set, whose hash is the manifest's."""
    ref = manifest["tokenizer_set"]
    local = store.local()
    if local is not None:
        return str(local / ref["path"])
    target = cache_dir() / "tokenizers" / ref["sha256"]
    if target.is_dir() and hash_tokenizer_dir(target) == ref["sha256"]:
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target.parent))
    try:
        for name in SET_FILES:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(store.read_bytes(f"{ref['path']}/{name}"))
        got = hash_tokenizer_dir(tmp)
        if got != ref["sha256"]:
            raise ValueError(
                f"{store.url_of(ref['path'])}: the tokenizer set's files hash to {got}, the manifest says {ref['sha256']}"
            )
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def embodiment_of(store: Store, entry: dict) -> Embodiment | None:
    """The embodiment spec a dataset's samples were built with (None for web data)."""
    rel = entry.get("embodiment_spec")
    if not rel:
        return None
    return embodiment_from_text(store.read_bytes(rel).decode(), store.url_of(rel))
