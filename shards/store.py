"""Where a published layout lives: a folder, or any URL fsspec reaches (`file://`, `http(s)://`, `s3://`,
`hf://datasets/<org>/<name>`). Readers (inspect, mixtures, the trainer) and `publish` go through this one
class, so every tool takes a path or a URL alike.

S3 endpoints and credentials come from the standard AWS variables (`AWS_ENDPOINT_URL_S3`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import shutil
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import fsspec

from vlamix.shards.layout import MANIFEST

__all__ = ["Store", "StoreError", "is_url", "store_for"]

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
            if self.remote:
                self.fs.invalidate_cache(self.path(rel))
            return self.fs.exists(self.path(rel))
        except Exception as e:
            raise self._fail(rel, e, "check") from e

    def size(self, rel: str) -> int | None:
        try:
            if self.remote:
                self.fs.invalidate_cache(self.path(rel))
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
