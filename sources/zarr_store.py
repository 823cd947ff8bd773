"""Zarr stores as the replay-buffer reader (sources/zarr_buffer.py) finds, opens and reads them.

- A store is a `.zarr` directory (zarr format 2, as diffusion-policy writes it, or 3: zarr tells them
  apart) or a `.zarr.zip` file (diffusion-policy's and UMI's downloads), at a local path or a URL
  (sources/location.py). A zip at a URL is read through the retrying, range-reading `RemoteFile`; a
  directory at a URL through zarr's FsspecStore, each array read retried after a transient error.
- `path:` names one store, a folder of stores, or a glob; stores come in natural order.
- The arrays directly under `data/` are listed one by one, so an array that does not open (a codec this
  install lacks: UMI's JPEG-XL through imagecodecs) is reported by name instead of failing the others.
- Episode boundaries (`survey`): meta/episode_ends must be 1-D integers, strictly increasing from above
  0, and end at the length of every array under `data/`; else the store's problem says where it breaks.
- Zarr's own rule holds: a chunk that is not stored reads as the array's fill value (zarr 3 skips writing
  chunks that hold only it).
"""

from __future__ import annotations

import contextlib
import glob
import re
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import numcodecs.errors
import numpy as np
import zarr
import zarr.errors
from zarr.core.sync import collect_aiterator
from zarr.storage import FsspecStore, LocalStore, ZipStore

from vlamix.config import ConfigError
from vlamix.sources.frames import declared_size_problem, one_line
from vlamix.sources.location import Location, display, has_glob, is_remote, locate, open_file
from vlamix.sources.remote import Unreachable, retrying, storage_options

__all__ = [
    "DATA",
    "ENDS",
    "SUFFIXES",
    "StoreError",
    "Survey",
    "data_arrays",
    "find_stores",
    "open_store",
    "read_rows",
    "survey",
]

SUFFIXES = (".zarr", ".zarr.zip")
DATA = "data"
ENDS = "meta/episode_ends"
_MARKERS = (".zgroup", "zarr.json")  # a directory holding one is a store (format 2, format 3)
_UNKNOWN_CODEC = (numcodecs.errors.UnknownCodecError, zarr.errors.UnknownCodecError)
_OPEN_ERRORS = (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile)
_READ_ERRORS = (OSError, RuntimeError, ValueError, TypeError, KeyError)  # codecs raise these on bad bytes
T = TypeVar("T")


class StoreError(Exception):
    """A store that does not open as a Zarr group; the message is the reason, on one line."""


def _natural(p: Location) -> list:
    return [[int(t) if t.isdigit() else t for t in re.split(r"(\d+)", part)] for part in p.parts]


def _is_store_name(p: Location) -> bool:
    return p.name.endswith(SUFFIXES)


def _children(base: Location) -> list[Location]:
    if not is_remote(base):
        return list(Path(base).iterdir()) if Path(base).is_dir() else []
    return retrying(lambda: list(base.iterdir()), display(base), "list")


def _globbed(base: Location) -> list[Location]:
    if not is_remote(base):
        return [Path(p) for p in glob.glob(str(base), recursive=True)]
    found = retrying(lambda: base.fs.glob(base.path), display(base), "list")
    return [base.with_segments(base.fs.unstrip_protocol(k)) for k in found]


def _has_marker(base: Location) -> bool:
    if not is_remote(base):
        return any((Path(base) / m).is_file() for m in _MARKERS)
    return any(retrying(lambda m=m: (base / m).exists(), display(base), "stat") for m in _MARKERS)


def find_stores(root: Path, spec: str) -> list[Location]:
    """The stores `spec` names (relative to `root`, or a URL): itself when it is one (a name ending in
    .zarr or .zarr.zip, or a folder holding Zarr metadata), a glob's matches that end so, or the stores
    in a folder; natural order (replay_2 before replay_10). ConfigError when there are none."""
    base = locate(root, spec)
    if not has_glob(spec) and not is_remote(base) and not Path(base).exists():
        raise ConfigError(f"path {spec!r} (under {root}) matches no file or folder")
    if has_glob(spec):
        stores = [p for p in _globbed(base) if _is_store_name(p)]
    elif _is_store_name(base) or _has_marker(base):
        return [base]
    else:
        stores = [p for p in _children(base) if _is_store_name(p)]
    if not stores:
        raise ConfigError(
            f"{spec!r} (under {root}) matches no Zarr store: name a .zarr folder or a .zarr.zip file, a "
            "folder holding them, or a glob"
        )
    return sorted(stores, key=lambda p: (_natural(p), str(p)))


class _FileZipStore(ZipStore):
    """A read-only ZipStore over an open file (a remote zip's RemoteFile) instead of a path: zarr's
    ZipStore opens `zipfile.ZipFile(self.path)`, which is all this changes (zarr 3.1 internals)."""

    def __init__(self, f: BinaryIO, name: str):
        self._file = f
        super().__init__(name, mode="r")

    def _sync_open(self) -> None:
        if self._is_open:
            raise ValueError("store is already open")
        self._lock = threading.RLock()
        self._zf = zipfile.ZipFile(self._file, mode="r")
        self._is_open = True

    def close(self) -> None:
        with contextlib.suppress(AttributeError):  # never opened
            super().close()
        self._file.close()


def _store(p: Location):
    zipped = p.name.endswith(".zip")
    if not is_remote(p):
        return ZipStore(Path(p), mode="r") if zipped else LocalStore(Path(p), read_only=True)
    if zipped:
        return _FileZipStore(open_file(p), str(p))
    return FsspecStore.from_url(str(p), storage_options=storage_options(p.protocol), read_only=True)


def _call(p: Location, call: Callable[[], T], doing: str = "read") -> T:
    """`call()`, retried after a transient error when the store is at a URL (a local one is not)."""
    return retrying(call, display(p), doing) if is_remote(p) and not p.name.endswith(".zip") else call()


@contextlib.contextmanager
def open_store(where: str | Location) -> Iterator[tuple[zarr.Group, Location]]:
    """The store's root group (and where it is), closed after the block. Raises StoreError for one that
    is missing or does not open as a Zarr group."""
    p = where if isinstance(where, Path) else locate("/", where)
    try:
        store = _store(p)
    except _OPEN_ERRORS as e:
        raise StoreError(f"does not open as a Zarr store: {one_line(e)}") from e
    try:
        try:
            group = _call(p, lambda: zarr.open_group(store, mode="r"), "open")
        except _OPEN_ERRORS as e:
            raise StoreError(f"does not open as a Zarr store: {one_line(e)}") from e
        yield group, p
    finally:
        with contextlib.suppress(*_OPEN_ERRORS, AttributeError):  # a store that never opened
            store.close()


def data_arrays(group: zarr.Group, p: Location) -> tuple[dict[str, zarr.Array], dict[str, str]]:
    """The arrays directly under `data/` by name, and why each one that does not open does not (a codec
    this install lacks, metadata that does not parse). Raises StoreError when there is no `data/`."""
    try:
        names = _call(p, lambda: collect_aiterator(group.store.list_dir(DATA)), "list")
    except _OPEN_ERRORS as e:
        raise StoreError(f"{DATA}/ does not list: {one_line(e)}") from e
    arrays: dict[str, zarr.Array] = {}
    problems: dict[str, str] = {}
    for name in sorted({n.rstrip("/") for n in names}):
        if not name or name.startswith(".") or name in _MARKERS:
            continue
        try:
            node = _call(p, lambda name=name: group[f"{DATA}/{name}"], "open")
        except _OPEN_ERRORS as e:
            cause = e.__cause__ if isinstance(e, Unreachable) and e.__cause__ is not None else e
            if isinstance(cause, KeyError):
                continue  # a stray file, not a member
            if isinstance(cause, _UNKNOWN_CODEC):
                problems[name] = (
                    f"{DATA}/{name} is stored with a codec this install cannot decode ({one_line(cause)}): "
                    "re-encode it as raw uint8 frames with a numcodecs compressor (blosc, zstd, gzip)"
                )
            else:
                problems[name] = f"{DATA}/{name} does not open: {one_line(e)}"
            continue
        if isinstance(node, zarr.Array):
            arrays[name] = node
    if not arrays and not problems:
        exists = _call(p, lambda: DATA in group, "stat")
        if not exists:
            raise StoreError(f"has no {DATA}/ group: not a replay buffer (data/<key> + meta/episode_ends)")
    return arrays, problems


def read_rows(array: zarr.Array, start: int, stop: int, p: Location) -> np.ndarray:
    """Rows [start, stop) of an array (its first axis), retried at a URL."""
    return np.asarray(_call(p, lambda: array[start:stop]))


@dataclass(frozen=True)
class Survey:
    """What listing learns of one store: each episode's end step (None when their count does not read)
    and why none of its episodes can be read (None when they can)."""

    ends: np.ndarray | None
    problem: str | None = None


def _ends(group: zarr.Group, p: Location) -> Survey:
    try:
        node = _call(p, lambda: group[ENDS], "open")
    except _READ_ERRORS as e:
        if isinstance(e, KeyError) or isinstance(e.__cause__, KeyError):
            return Survey(None, f"has no {ENDS}: not a replay buffer (data/<key> arrays + {ENDS})")
        return Survey(None, f"{ENDS} does not open: {one_line(e)}")
    if not isinstance(node, zarr.Array) or node.ndim != 1 or node.dtype.kind not in "iu":
        what = f"{node.dtype} values of shape {node.shape}" if isinstance(node, zarr.Array) else "a group"
        return Survey(None, f"{ENDS} holds {what}, expected one integer per episode")
    too_big = declared_size_problem(node.shape, node.dtype.itemsize)
    if too_big:
        return Survey(None, f"{ENDS} {too_big}")
    try:
        return Survey(read_rows(node, 0, node.shape[0], p).astype(np.int64))
    except _READ_ERRORS as e:
        return Survey(None, f"{ENDS} does not read: {one_line(e)}")


def _boundary_problem(ends: np.ndarray, arrays: dict) -> str | None:
    """Why the boundaries cannot be trusted: ends that stop increasing, or that disagree with the length
    of an array under data/."""
    previous = np.concatenate([[0], ends[:-1]])
    stops = np.flatnonzero(ends <= previous)
    fix = f"rewrite {ENDS} (each episode's cumulative end step) or re-export the store"
    if len(stops):
        k = int(stops[0])
        where = (
            f"{ENDS}[0] is {ends[0]}" if k == 0 else f"{ENDS}[{k - 1}] is {ends[k - 1]}, [{k}] is {ends[k]}"
        )
        return (
            f"{ENDS} is not strictly increasing at index {k} ({where}): no episode boundary can be "
            f"trusted; {fix}"
        )
    last = int(ends[-1])
    for name, a in sorted(arrays.items()):
        if a.ndim == 0 or a.shape[0] != last:
            held = f"shape {a.shape}" if a.ndim == 0 else f"{a.shape[0]} steps"
            return (
                f"the last of {ENDS} ([{len(ends) - 1}]) is {last}, but {DATA}/{name} holds {held}: a store "
                f"written incompletely or edited, no episode boundary can be trusted; {fix}"
            )
    return None


def survey(p: Location) -> tuple[Survey, dict, dict]:
    """The store's episode ends and, where they hold, its data arrays (and those that do not open)."""
    try:
        with open_store(p) as (group, where):
            found = _ends(group, where)
            if found.ends is None:
                return found, {}, {}
            try:
                arrays, unopened = data_arrays(group, where)
            except StoreError as e:
                return Survey(found.ends, str(e)), {}, {}
            if len(found.ends) == 0:
                filled = {n: a.shape[0] for n, a in arrays.items() if a.ndim and a.shape[0]}
                if filled:
                    return Survey(None, f"{ENDS} is empty, but data/ holds steps ({filled})"), {}, {}
                return found, {}, {}
            return Survey(found.ends, _boundary_problem(found.ends, arrays)), arrays, unopened
    except StoreError as e:
        return Survey(None, str(e)), {}, {}
