"""A layout's small assets on this machine: the tokenizer set (fetched once into a cache named by its
hash and verified against it) and the embodiment specs, from a local folder or any URL."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from vlamix.schemas.embodiment import Embodiment, embodiment_from_text
from vlamix.shards.store import Store
from vlamix.tokenizers.tokenizer_set import SET_FILES
from vlamix.tokenizers.vocab import hash_tokenizer_dir

__all__ = ["cache_dir", "embodiment_of", "fetch_tokenizer_set", "tokenizer_dir"]


def cache_dir() -> Path:
    """Where fetched assets live: `$VLAMIX_CACHE`, else `$XDG_CACHE_HOME/vlamix`, else `~/.cache/vlamix`."""
    if os.environ.get("VLAMIX_CACHE"):
        return Path(os.environ["VLAMIX_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vlamix"


def fetch_tokenizer_set(url: str, cache_root: Path) -> Path:
    """A set at a URL (`.../tokenizers/<sha256>`) copied into `cache_root/<sha256>/`, checked against
    its hash (once: a verified copy is reused)."""
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


def tokenizer_dir(store: Store, manifest: dict) -> str:
    """A local folder holding the layout's tokenizer set, whose hash is the manifest's."""
    ref = manifest["tokenizer_set"]
    local = store.local()
    if local is not None:
        return str(local / ref["path"])
    path = fetch_tokenizer_set(store.url_of(ref["path"]), cache_dir() / "tokenizers")
    if path.name != ref["sha256"]:
        raise ValueError(f"{store.url}: the manifest names set {ref['path']} but its hash is {ref['sha256']}")
    return str(path)


def embodiment_of(store: Store, entry: dict) -> Embodiment | None:
    """The embodiment spec a dataset's samples were built with (None for web data)."""
    rel = entry.get("embodiment_spec")
    if not rel:
        return None
    return embodiment_from_text(store.read_bytes(rel).decode(), store.url_of(rel))
