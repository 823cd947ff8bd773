"""A layout's small assets on this machine: the tokenizer set (fetched once into a cache named by its
hash and verified against it) and the embodiment specs, from a local folder or any URL."""

from __future__ import annotations

from vlamix.schemas.embodiment import Embodiment, embodiment_from_text
from vlamix.shards.store import Store
from vlamix.tokenizers.tokenizer_set import cache_dir, fetch_tokenizer_set

__all__ = ["embodiment_of", "tokenizer_dir"]


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
