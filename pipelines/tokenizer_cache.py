"""The tokenizer set as a job's processes use it: loaded once per process from the folder or URL a task
carries. Tasks sent to Beam and Ray workers carry that string, never the set (small to pickle, and
loaded where it is used); each process turns it into a TokenizerSet here once and hands the set to the
transforms. A set at a remote URL is fetched into the local cache first (shards/assets.py)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from vlamix.shards.assets import cache_dir, fetch_tokenizer_set
from vlamix.shards.store import is_url
from vlamix.tokenizers.tokenizer_set import TokenizerSet, load_tokenizer_set

__all__ = ["tokenizer_set_at"]


@cache
def tokenizer_set_at(url_or_dir: str) -> TokenizerSet:
    """The set at a local folder, a `file://` URL or a remote URL (fetched and verified), once per
    process and string."""
    if is_url(url_or_dir) and not url_or_dir.startswith("file://"):
        return load_tokenizer_set(fetch_tokenizer_set(url_or_dir, cache_dir() / "tokenizers"))
    return load_tokenizer_set(Path(url_or_dir.removeprefix("file://")))
