"""Where a published layout lives: a folder, or any URL fsspec reaches (`file://`, `http(s)://`, `s3://`,
`hf://datasets/<org>/<name>`). Readers (inspect, mixtures, the trainer) and `publish` go through this one
class, so every tool takes a path or a URL alike.

S3 endpoints and credentials come from the standard AWS variables (`AWS_ENDPOINT_URL_S3`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`)."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from pathlib import Path

import fsspec

from vlamix.shards.layout import MANIFEST

__all__ = ["Store", "StoreError", "is_url"]

REMOTE = ("http://", "https://", "s3://", "hf://", "gs://", "az://", "abfs://")


class StoreError(OSError):
    """A layout file that cannot be read or written, with the URL and what to check."""


def is_url(text: str | Path) -> bool:
    return isinstance(text, str) and "://" in text


def _storage_options(protocol: str) -> dict:
    if protocol in ("s3", "s3a"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}
    return {}


class Store:
    """A layout root. `Store("out")`, `Store("s3://bucket/layouts/v1")`, or the manifest's own URL
    (`Store("http://host/layout/manifest.json")`: its folder is the root)."""

    def __init__(self, where: str | Path):
        text = str(where)
        if text.endswith("/" + MANIFEST) or text == MANIFEST:
            text = text[: -len(MANIFEST)].rstrip("/") or "."
        self.url = text.rstrip("/") if is_url(text) else str(Path(text).resolve())
        protocol = self.url.split("://", 1)[0] if is_url(self.url) else "file"
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **_storage_options(protocol))
        self.remote = is_url(self.url) and not self.url.startswith("file://")

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def path(self, rel: str) -> str:
        """The fsspec path of a layout file (what `self.fs` takes)."""
        return posixpath.join(self.root, rel) if self.remote else os.path.join(self.root, rel)

    def url_of(self, rel: str) -> str:
        """The full URL (or local path) of a layout file, for readers outside vlamix."""
        return f"{self.url}/{rel}" if self.remote else os.path.join(self.root, rel)

    def local(self) -> Path | None:
        """The layout's folder when it is on this machine's filesystem, else None."""
        return None if self.remote else Path(self.root)

    def _fail(self, rel: str, e: Exception, doing: str = "read") -> StoreError:
        return StoreError(f"{self.url_of(rel)}: cannot {doing} ({type(e).__name__}: {e})")

    def open(self, rel: str, mode: str = "rb", stream: bool = False):
        """A file object; `stream=True` for one front-to-back pass (over HTTP: no range requests)."""
        kwargs = {"block_size": 0} if stream and self.url.startswith(("http://", "https://")) else {}
        try:
            return self.fs.open(self.path(rel), mode, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as e:
            raise self._fail(rel, e) from e

    def read_bytes(self, rel: str, start: int | None = None, end: int | None = None) -> bytes:
        try:
            if start is None:
                return self.fs.cat_file(self.path(rel))
            return self.fs.cat_file(self.path(rel), start=start, end=end)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{self.url_of(rel)}: not found") from e
        except Exception as e:
            raise self._fail(rel, e) from e

    def read_json(self, rel: str) -> dict:
        return json.loads(self.read_bytes(rel))

    def exists(self, rel: str) -> bool:
        try:
            return self.fs.exists(self.path(rel))
        except Exception as e:
            raise self._fail(rel, e, "check") from e

    def size(self, rel: str) -> int | None:
        try:
            return int(self.fs.size(self.path(rel)))
        except FileNotFoundError:
            return None
        except Exception as e:
            raise self._fail(rel, e, "stat") from e

    def sha256(self, rel: str) -> str:
        h = hashlib.sha256()
        with self.open(rel, stream=True) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
