"""Where a published layout lives: a folder, or any URL fsspec reaches (`file://`, `http(s)://`, `s3://`,
`hf://datasets/<org>/<name>`). Readers (inspect, mixtures, the trainer) and `publish` go through this one
class, so every tool takes a path or a URL alike.

S3 endpoints and credentials come from the standard AWS variables (`AWS_ENDPOINT_URL_S3`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`).

Safety and faults:
- Only the schemes in `SCHEMES` are accepted (and plain paths); anything else, a chained fsspec URL
  (`simplecache::http://...`) included, is refused before fsspec sees it (`UnsupportedURL`).
- `read_bytes` retries transient remote errors (HTTP 5xx, 408, 429, dropped connections, timeouts)
  `READ_ATTEMPTS` times in all with exponential backoff, then raises a `StoreError` that names the URL,
  the byte range, the attempts and the last error. A permanent error (404, 403, 416) is not retried."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
import shutil
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import fsspec

from vlamix.shards.layout import MANIFEST
from vlamix.sources.remote import (
    SCHEMES,
    Unreachable,
    UnsupportedURL,
    check_url,
    http_status,
    is_transient,
    is_url,
    retrying,
    storage_options,
)

__all__ = [
    "SCHEMES",
    "Store",
    "StoreError",
    "UnsupportedURL",
    "check_url",
    "http_status",
    "is_transient",
    "is_url",
    "store_for",
]

REMOTE = ("http://", "https://", "s3://", "hf://", "gs://", "az://", "abfs://")
log = logging.getLogger("vlamix.store")


class StoreError(Unreachable):
    """A layout file that cannot be read or written, with the URL and what to check."""


def _read_local(path: str, start: int | None, end: int | None) -> bytes:
    with open(path, "rb") as f:
        if start is None:
            return f.read()
        f.seek(start)
        return f.read(-1 if end is None else max(end - start, 0))


class Store:
    """A layout root. `Store("out")`, `Store("s3://bucket/layouts/v1")`, or the manifest's own URL
    (`Store("http://host/layout/manifest.json")`: its folder is the root)."""

    def __init__(self, where: str | Path):
        text = str(where)
        check_url(text)
        if text.endswith("/" + MANIFEST) or text == MANIFEST:
            text = text[: -len(MANIFEST)].rstrip("/") or "."
        self.url = text.rstrip("/") if is_url(text) else str(Path(text).resolve())
        protocol = self.url.split("://", 1)[0] if is_url(self.url) else "file"
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **storage_options(protocol))
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

    def _retrying(self, what: str, doing: str, call):
        """`call()`, tried again after a transient remote error (sources/remote.py); a permanent error,
        or the last transient one, becomes a StoreError naming `what`."""
        try:
            return retrying(call, what, doing, remote=self.remote)
        except Unreachable as e:
            if isinstance(e, StoreError):
                raise
            raise StoreError(str(e)) from e.__cause__

    def read_bytes(self, rel: str, start: int | None = None, end: int | None = None) -> bytes:
        """The file's bytes, or bytes [start, end). Transient remote errors are retried with backoff;
        then, or at once for a permanent one, a StoreError names the URL, the range and the cause
        (FileNotFoundError for a missing file)."""
        what = self.url_of(rel) + (
            "" if start is None else f" bytes {start}-{'' if end is None else end - 1}"
        )
        if self.remote:
            kwargs = {} if start is None else {"start": start, "end": end}
            call = lambda: self.fs.cat_file(self.path(rel), **kwargs)  # noqa: E731
        else:  # a local file: Python's own file object, without fsspec's per-call cost (random access)
            call = lambda: _read_local(self.path(rel), start, end)  # noqa: E731
        try:
            return self._retrying(what, "read", call)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{what}: not found") from e

    def read_json(self, rel: str) -> dict:
        return json.loads(self.read_bytes(rel))

    def exists(self, rel: str) -> bool:
        try:
            if self.remote:
                self.fs.invalidate_cache(self.path(rel))
            return self.fs.exists(self.path(rel))
        except Exception as e:
            raise self._fail(rel, e, "check") from e

    def size(self, rel: str) -> int | None:
        """The file's size (a HEAD request over HTTP), None when it is missing."""

        def stat() -> int:
            if self.remote:
                self.fs.invalidate_cache(self.path(rel))
            try:
                return int(self.fs.size(self.path(rel)))
            except FileNotFoundError as e:  # fsspec's HTTP stat says "not found" for a 500 too
                if e.__cause__ is not None and is_transient(e.__cause__):
                    raise e.__cause__ from None
                raise

        try:
            return self._retrying(self.url_of(rel), "stat", stat)
        except FileNotFoundError:
            return None

    def sha256(self, rel: str) -> str:
        h = hashlib.sha256()
        with self.open(rel, stream=True) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    # --- writing (ingest writes its layout, `work/` included, through these) ---

    @contextlib.contextmanager
    def open_write(self, rel: str) -> Iterator:
        """A binary file that appears at `rel` whole or not at all: locally a temp name renamed on
        success, on an object store one PUT when closed (discarded on error)."""
        local = self.local()
        if local is not None:
            target = local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            try:
                with tmp.open("wb") as f:
                    yield f
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            return
        f = self.fs.open(self.path(rel), "wb")
        try:
            yield f
        except BaseException:
            if hasattr(f, "discard"):
                f.discard()
            raise
        f.close()

    def write_bytes(self, rel: str, data: bytes) -> None:
        with self.open_write(rel) as f:
            f.write(data)

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode())

    def write_json(self, rel: str, data: dict) -> None:
        self.write_text(rel, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode()

    def put_file(self, local_path: str | Path, rel: str) -> None:
        """Copy a local file to `rel` (atomically, as open_write)."""
        local = self.local()
        if local is not None:
            with self.open_write(rel) as f, open(local_path, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
            return
        self.fs.put_file(str(local_path), self.path(rel))

    def put_dir(self, local_dir: str | Path, rel: str) -> None:
        """Copy a local folder's files under `rel`."""
        for p in sorted(Path(local_dir).rglob("*")):
            if p.is_file():
                self.put_file(p, f"{rel}/{p.relative_to(local_dir).as_posix()}")

    def rm(self, rel: str) -> None:
        local = self.local()
        if local is not None:
            (local / rel).unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.path(rel))

    def rmtree(self, rel: str) -> None:
        local = self.local()
        if local is not None:
            shutil.rmtree(local / rel, ignore_errors=True)
            return
        with contextlib.suppress(FileNotFoundError):
            if self.fs.exists(self.path(rel)):
                self.fs.rm(self.path(rel), recursive=True)

    def glob(self, pattern: str) -> list[str]:
        """Layout-relative paths matching `pattern` (e.g. `work/index/d/*.parquet`), sorted."""
        local = self.local()
        if local is not None:
            return sorted(p.relative_to(local).as_posix() for p in local.glob(pattern) if p.is_file())
        self.fs.invalidate_cache()  # other processes (workers) write here too: never trust a cached listing
        root = self.root.rstrip("/") + "/"
        return sorted(p[len(root) :] if p.startswith(root) else p for p in self.fs.glob(self.path(pattern)))


def store_for(where: str) -> Store:
    """One Store per layout per process (workers reuse it for every task). Keyed by the process id as
    well: a forked child (a dataloader worker) must not use its parent's fsspec filesystem, whose event
    loop stayed behind ("This class is not fork-safe")."""
    return _store_for(where, os.getpid())


@cache
def _store_for(where: str, pid: int) -> Store:
    return Store(where)
