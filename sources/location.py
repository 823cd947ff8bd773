"""Where a source's raw files live. A `path:` (and `images:`, an annotation file, a web annotation file)
is a path relative to the sources file, an absolute path, or a URL: `file://`, `s3://`, `gs://`,
`http(s)://`, `hf://datasets/ORG/NAME[@REV]/SUBPATH`. `locate` turns it into a `universal_pathlib`
UPath (for a local path, a real `pathlib.Path`), so the readers list, join and name files the same way
wherever they are; fsspec does the work underneath.

Reading goes through this module, never through a copy of the dataset:
- `open_file` gives a local file as Python's own file object, and a remote one as a buffered,
  seekable file that reads byte ranges on demand (`RemoteFile`). Every read is retried after a transient
  error with backoff (sources/remote.py); a read that still fails raises `Unreachable` naming the URL.
  A server that does not answer range requests gets the file streamed once into a bounded spool
  (`SPOOL_MAX_BYTES`, in memory up to 64 MiB, then a temporary file removed on close).
- `read_bytes`, `is_file` and `glob` retry the same way.

Credentials never appear in a URL (`check_url(credentials=False)` refuses them): they come from the
environment. With `HF_HUB_OFFLINE=1`, an `hf://` source is a one-line error naming it."""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TypeAlias

from typing_extensions import TypeIs
from upath import UPath

from vlamix.sources.remote import Unreachable, check_url, is_transient, is_url, retrying, storage_options

__all__ = [
    "BLOCK_BYTES",
    "SPOOL_MAX_BYTES",
    "Location",
    "RemoteFile",
    "Unreachable",
    "display",
    "glob_files",
    "is_file",
    "is_remote",
    "locate",
    "open_file",
    "read_bytes",
    "readable",
]

Location: TypeAlias = Path | UPath  # what readers hold: a local path (PosixUPath is both) or a URL
BLOCK_BYTES = 1 << 20  # bytes a remote file fetches per range request (reads ahead within it)
SPOOL_MAX_BYTES = int(os.environ.get("VLAMIX_SPOOL_MAX_BYTES", 8 << 30))  # see RemoteFile
_SPOOL_MEMORY_BYTES = 64 << 20
_GLOB = re.compile(r"[*?\[]")


class OfflineHub(Unreachable, ValueError):
    """An hf:// source while HF_HUB_OFFLINE is set."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def locate(root: Path | str, spec: str | Path) -> Location:
    """`spec` as a location: a URL as it is (checked), an absolute path, or a path relative to `root`
    (the sources file's folder). Raises UnsupportedURL for a scheme vlamix does not read or a URL with
    credentials in it, OfflineHub for an hf:// source under HF_HUB_OFFLINE=1."""
    text = str(spec)
    check_url(text, credentials=False)
    if not is_url(text) or text.startswith("file://"):
        path = Path(text[len("file://") :] if text.startswith("file://") else text)
        return UPath(path if path.is_absolute() else Path(root) / path)
    protocol = text.split("://", 1)[0]
    if protocol == "hf" and _offline():
        raise OfflineHub(
            f"{text}: HF_HUB_OFFLINE=1 is set, so the Hugging Face Hub cannot be read; unset it, or "
            "download the dataset (`hf download --repo-type dataset ...`) and point `path:` at the copy"
        )
    return UPath(text, **storage_options(protocol))


def is_remote(p: Location) -> TypeIs[UPath]:
    return isinstance(p, UPath) and p.protocol not in ("", "file", "local")


def display(p: Location, root: Path | str | None = None) -> str:
    """How errors, the manifest and quarantine records name a file: a URL as it is; a local path
    relative to `root` when it lies under it."""
    if is_remote(p):
        return str(p)
    local = Path(p)
    if root is not None and local.is_relative_to(root):
        return str(local.relative_to(root))
    return str(local)


def read_bytes(p: Location) -> bytes:
    return retrying(p.read_bytes, display(p), "read", remote=is_remote(p))


def is_file(p: Location) -> bool:
    """Whether `p` is a file. At a URL this asks the server (retried) and, unlike fsspec's own
    `isfile`, never reads a server error as "no such file": an error that persists raises."""
    if not is_remote(p):
        return p.is_file()

    def info() -> bool:
        try:
            return p.fs.info(p.path).get("type") == "file"
        except FileNotFoundError as e:
            if e.__cause__ is not None and is_transient(e.__cause__):
                raise  # retrying() tries it again, then raises Unreachable
            return False

    return retrying(info, display(p), "stat")


def glob_files(base: Location, pattern: str | None = None) -> list[Location]:
    """The files under `base` matching `pattern` (or `base` itself read as a glob), listed by name only:
    the listing costs memory for the names, never for the data. One listing call: no request per file,
    and a server error fails the listing (retried first) instead of leaving files out."""
    if not is_remote(base):
        import glob as _glob

        if pattern == "*":  # a folder's files: no glob, so a `[` in the folder's name means itself
            return [p for p in Path(base).iterdir() if p.is_file()] if Path(base).is_dir() else []

        spec = str(base if pattern is None else base / pattern)
        hidden = pattern is not None  # as pathlib's glob (dot files too); a glob `path:` as glob.glob
        return [Path(p) for p in _glob.glob(spec, recursive=True, include_hidden=hidden) if os.path.isfile(p)]
    fs = base.fs
    spec = base.path if pattern is None else f"{base.path.rstrip('/')}/{pattern}"

    def run() -> list[Path]:
        found = fs.glob(spec, detail=True)
        return [
            base.with_segments(fs.unstrip_protocol(k)) for k, v in found.items() if v.get("type") == "file"
        ]

    return retrying(run, display(base), "list")


def has_glob(spec: str) -> bool:
    return bool(_GLOB.search(spec))


@contextlib.contextmanager
def readable(where: str | Location) -> Iterator[str | BinaryIO]:
    """What a format library opens (h5py, PyAV, pyarrow): a local file's path (their native, fastest
    reader), or a remote file's open RemoteFile, closed after the block."""
    p = where if isinstance(where, Path) else locate("/", where)
    if not is_remote(p):
        yield str(p)
        return
    with open_file(p) as f:
        yield f


def open_file(p: Location, block: int = BLOCK_BYTES) -> BinaryIO:
    """A readable, seekable binary file object: Python's own for a local file, else a buffered
    RemoteFile (range requests of `block` bytes, retried)."""
    if not is_remote(p):
        return open(p, "rb")
    return io.BufferedReader(RemoteFile(p, block), buffer_size=block)


class RemoteFile(io.RawIOBase):
    """A remote file read by byte ranges (fsspec), each read retried after a transient error by opening
    the file again at the same position. When the server ignores range requests (a plain static server
    answering 200 with the whole body), the file is streamed once into a spool bounded by
    SPOOL_MAX_BYTES and read from there; a larger file is refused with what to do."""

    def __init__(self, p: UPath, block: int = BLOCK_BYTES):
        super().__init__()
        self.url, self._fs, self._path, self._block = str(p), p.fs, p.path, block
        self.size = int(retrying(lambda: self._fs.size(self._path), self.url, "stat"))
        self._pos, self._f, self._spool = 0, None, None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _ranged(self, n: int) -> bytes:
        if self._f is None:
            self._f = self._fs.open(self._path, "rb", block_size=self._block, cache_type="readahead")
        try:
            self._f.seek(self._pos)
            return self._f.read(n)
        except BaseException:
            self._drop()  # its buffer may be half filled: the next attempt opens the file again
            raise

    def _spooled(self) -> BinaryIO:
        if self._spool is None:
            if self.size > SPOOL_MAX_BYTES:
                raise Unreachable(
                    f"{self.url}: the server does not answer range requests and the file is "
                    f"{self.size} bytes, above the {SPOOL_MAX_BYTES}-byte spool "
                    "(VLAMIX_SPOOL_MAX_BYTES); serve it with range support or raise the limit"
                )
            self._spool = retrying(self._fill_spool, self.url, "read")
        return self._spool

    def _fill_spool(self) -> BinaryIO:
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY_BYTES)  # noqa: SIM115 - kept open
        try:
            with self._fs.open(self._path, "rb", block_size=0) as stream:  # one front-to-back GET
                while block := stream.read(BLOCK_BYTES):
                    spool.write(block)
        except BaseException:
            spool.close()
            raise
        return spool  # type: ignore[return-value]

    def readinto(self, b) -> int:  # type: ignore[override]
        n = min(len(b), max(self.size - self._pos, 0))
        if n == 0:
            return 0
        if self._spool is not None:
            data = self._read_spool(n)
        else:
            try:
                data = retrying(lambda: self._ranged(n), f"{self.url} bytes {self._pos}-{self._pos + n - 1}")
            except Unreachable as e:
                if not _no_range_support(e):
                    raise
                self._spooled()
                data = self._read_spool(n)
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _read_spool(self, n: int) -> bytes:
        spool = self._spooled()
        spool.seek(self._pos)
        return spool.read(n)

    def _drop(self) -> None:
        if self._f is not None:
            with contextlib.suppress(Exception):  # a broken connection may not close cleanly
                self._f.close()
            self._f = None

    def close(self) -> None:
        self._drop()
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        super().close()


def _no_range_support(e: BaseException) -> bool:
    """fsspec's HTTP file says so when a ranged GET comes back whole (status 200)."""
    cause = e.__cause__
    return isinstance(cause, ValueError) and "range requests" in str(cause)
