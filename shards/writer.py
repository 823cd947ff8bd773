"""Write one shard: members sorted, fixed mtime and owner, atomic (temp file + rename), with the byte
range of every sample for the index.

Every member header is `tarfile`'s own (`TarInfo.tobuf`, the POSIX.1-2001 format tarfile writes by
default); `TarStream` only writes header, data and padding straight to the file, which is what
webdataset's TarWriter does through tarfile's stream layer, in 60% of the time (a 15-member sample's
headers were half the shard writer's cost). tests/shards/test_writer.py holds the bytes equal to
webdataset's TarWriter output."""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vlamix.shards.members import member_problem
from vlamix.shards.random_access import sample_crc32
from vlamix.shards.store import Store

__all__ = ["MTIME", "ShardResult", "TarStream", "entry_sizes", "file_sha256", "write_shard"]

MTIME = 0  # fixed member time: the same samples give the same bytes (an int: a float adds a PAX header per member)
OWNER = "vlamix"


@dataclass(frozen=True)
class ShardResult:
    path: str  # relative to the layout root
    samples: int
    bytes: int
    sha256: str
    offsets: list[tuple[str, int, int, int]]  # (key, byte offset, byte length, crc32) of each sample


def _digests(path: Path, ranges: list[tuple[int, int]]) -> tuple[str, list[int]]:
    """sha256 of a local file and the crc32 of each of its (offset, length) ranges (sorted, disjoint),
    in one read of the file."""
    h, crcs, pos = hashlib.sha256(), [], 0
    with path.open("rb") as f:
        for offset, length in ranges:
            if offset > pos:
                h.update(skipped := f.read(offset - pos))
                pos += len(skipped)
            data = f.read(length)
            h.update(data)
            crcs.append(sample_crc32(data))
            pos += len(data)
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest(), crcs


def file_sha256(path: Path) -> str:
    """sha256 of a local file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _checked(entry: dict) -> dict:
    """The entry, after checking every member name it makes (a sanitized tar on write)."""
    for ext in entry:
        name = f"{entry['__key__']}.{ext}"
        if ext != "__key__" and (problem := member_problem(name)):
            raise ValueError(f"shard entry {entry['__key__']!r}: member {name!r} refused ({problem})")
    return entry


class TarStream:
    """Webdataset entries (`__key__` and bytes members) as tar members `<key>.<ext>` in sorted member
    order, mode 0444, owner and group OWNER, mtime MTIME; `offset` is the bytes written so far. `f` None
    writes nothing (sizes only). Close writes tar's end: two zero blocks, padded to a 10 KiB record."""

    def __init__(self, f):
        self.f, self.offset = f, 0

    def _put(self, data: bytes) -> None:
        if self.f is not None:
            self.f.write(data)
        self.offset += len(data)

    def write(self, entry: dict) -> int:
        key, start = entry["__key__"], self.offset
        for ext in sorted(entry):
            if ext == "__key__":
                continue
            data = entry[ext]
            if not isinstance(data, bytes | bytearray | memoryview):
                raise ValueError(f"shard entry {key!r}: member {ext!r} is {type(data).__name__}, not bytes")
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), MTIME, 0o444, OWNER, OWNER
            self._put(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            self._put(bytes(data))
            if pad := -len(data) % tarfile.BLOCKSIZE:
                self._put(tarfile.NUL * pad)
        return self.offset - start

    def close(self) -> None:
        self._put(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
        if rest := self.offset % tarfile.RECORDSIZE:
            self._put(tarfile.NUL * (tarfile.RECORDSIZE - rest))


def entry_sizes(entries: Iterable[dict]) -> list[int]:
    """Bytes each entry takes in a shard, exactly as write_shard lays it out (nothing is written)."""
    writer = TarStream(None)
    return [writer.write(_checked(entry)) for entry in entries]


def write_shard(store: Store, rel_path: str, entries: Iterable[dict]) -> ShardResult:
    """Write `entries` (webdataset dicts with `__key__` and bytes members) in the order given, to a temp
    file first (beside the shard on a local layout, in the system's temp folder for a remote one), then
    renamed or uploaded: a shard appears whole or not at all."""
    local = store.local()
    if local is not None:
        (local / rel_path).parent.mkdir(parents=True, exist_ok=True)
        tmp = (local / rel_path).with_name(f".{Path(rel_path).name}.tmp-{os.getpid()}")
    else:
        fd, name = tempfile.mkstemp(prefix=".shard-", suffix=".tar")
        os.close(fd)
        tmp = Path(name)
    offsets = []
    try:
        with tmp.open("wb") as f:
            writer = TarStream(f)
            for entry in entries:
                start = writer.offset
                writer.write(_checked(entry))
                offsets.append((entry["__key__"], start, writer.offset - start))
            writer.close()
            f.flush()
            os.fsync(f.fileno())
        size = tmp.stat().st_size
        digest, crcs = _digests(tmp, [(start, length) for _, start, length in offsets])
        if local is not None:
            os.replace(tmp, local / rel_path)
        else:
            store.put_file(tmp, rel_path)
    finally:
        tmp.unlink(missing_ok=True)
    return ShardResult(
        rel_path, len(offsets), size, digest, [(*o, crc) for o, crc in zip(offsets, crcs, strict=True)]
    )
