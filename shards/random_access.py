"""One sample by its byte range (from the index): a single range read of its contiguous members, over a
local file or any URL the Store reaches. What the sampler's draws point at.

Nothing read here is trusted: the chunk must be exactly the range's length, match the index's crc32
when the index has one (layouts written before that column have none), and hold only regular-file
members named `<key>.<ext>` of one sample (no absolute names, `..` or `.` parts, backslashes, links or
devices). Any failure is a `SampleReadError` naming the shard's URL, the byte range, the sample key and
what to do; remote errors were retried by the Store before that (transient ones only)."""

from __future__ import annotations

import io
import tarfile
import zlib

from vlamix.shards.members import member_problem
from vlamix.shards.store import Store, http_status, store_for

__all__ = ["SampleReadError", "read_sample", "sample_crc32", "ustar_members"]

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)


class SampleReadError(OSError):
    """A sample that cannot be read as the index says: one line with the URL, byte range and key."""


def sample_crc32(chunk: bytes) -> int:
    """The digest the index keeps of each sample's bytes (`crc32` column)."""
    return zlib.crc32(chunk) & 0xFFFFFFFF


def _where(store: Store, shard: str, offset: int, length: int, key: str | None) -> str:
    sample = "" if key is None else f" (sample {key})"
    return f"{store.url_of(shard)} bytes {offset}+{length}{sample}"


def _key_and_ext(name: str, key: str | None) -> tuple[str, str] | None:
    """(key, extension) of a member named `<key>.<ext>`; with `key` given, the name must start with it."""
    if key is not None:
        if not name.startswith(key + "."):
            return None
        return key, name[len(key) + 1 :]
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return ((f"{folder}/{stem}" if folder else stem), ext) if dot and stem else None


def ustar_members(chunk: bytes) -> list[tuple[str, bytes]] | None:
    """The (name, data) of every member when all are plain ustar regular files with a good header
    checksum (what vlamix's writer makes); None for anything else (pax or GNU headers, links, devices,
    directories, base-256 sizes, non-ASCII names, a short chunk), which `tarfile` then reads and judges.
    About 10x faster than `tarfile` on a sample's eight members."""
    out, pos, end = [], 0, len(chunk)
    if end % _BLOCK:
        return None
    while pos + _BLOCK <= end:
        header = chunk[pos : pos + _BLOCK]
        if header == _ZERO_BLOCK:
            break
        if header[156:157] not in (b"0", b"\0") or header[124] & 0x80:
            return None
        try:
            size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
            checksum = int(header[148:156].split(b"\0", 1)[0].strip(), 8)
            name = header[:100].split(b"\0", 1)[0].decode("ascii")
            prefix = (
                header[345:500].split(b"\0", 1)[0].decode("ascii") if header[257:263] == b"ustar\0" else ""
            )
        except ValueError:
            return None
        if checksum != sum(header) - sum(header[148:156]) + 8 * 0x20 or pos + _BLOCK + size > end:
            return None
        out.append((f"{prefix}/{name}" if prefix else name, chunk[pos + _BLOCK : pos + _BLOCK + size]))
        pos += _BLOCK + -(-size // _BLOCK) * _BLOCK
    return out


def _entries_tarfile(chunk: bytes, where: str) -> list[tuple[str, bytes]]:
    """The members through `tarfile`, refusing anything but regular files (links, devices, ...)."""
    out = []
    try:
        with tarfile.open(fileobj=io.BytesIO(chunk)) as tar:
            for m in tar.getmembers():
                if not m.isfile():
                    raise SampleReadError(
                        f"{where}: member {m.name!r} refused (a {_kind(m)}, not a regular file); the shard "
                        "is damaged or not a vlamix shard"
                    )
                out.append((m.name, tar.extractfile(m).read()))
    except tarfile.TarError as e:
        raise SampleReadError(f"{where}: not a sample ({e}); is the index stale?") from e
    return out


def _members(chunk: bytes, key: str | None, where: str) -> dict[str, bytes]:
    entries = ustar_members(chunk)
    if entries is None:
        entries = _entries_tarfile(chunk, where)
    out: dict[str, bytes] = {}
    for name, data in entries:
        why = member_problem(name)
        split = None if why else _key_and_ext(name, key or out.get("__key__"))
        if why is None and split is None:
            why = f"not `<key>.<ext>` of sample {key or out.get('__key__')!r}"
        if why is not None:
            raise SampleReadError(
                f"{where}: member {name!r} refused ({why}); the shard is damaged or not a vlamix shard"
            )
        out["__key__"], out[split[1]] = split[0], data
    return out


def _kind(m: tarfile.TarInfo) -> str:
    if m.issym() or m.islnk():
        return "link"
    if m.isdev():
        return "device"
    return "directory" if m.isdir() else f"member of type {m.type!r}"


def read_sample(
    where: str | Store,
    shard: str,
    offset: int,
    length: int,
    key: str | None = None,
    crc32: int | None = None,
) -> dict[str, bytes]:
    """{member extension: bytes} plus `__key__`; `key`, when given, must be the sample found there, and
    `crc32` (the index's digest of the range), when given, the digest of the bytes read."""
    store = where if isinstance(where, Store) else store_for(where)
    at = _where(store, shard, offset, length, key)
    try:
        chunk = store.read_bytes(shard, offset, offset + length)
    except OSError as e:  # the Store's message names the URL and range: keep its cause, add the key
        cause = str(e).split(": ", 1)[-1] if str(e).startswith(store.url_of(shard)) else str(e)
        if isinstance(e, FileNotFoundError):
            hint = "the shard was removed or moved: re-publish the layout or fix the mixture's layouts"
        elif http_status(e) == 416:
            hint = "the shard is shorter than its index says (truncated or replaced): re-publish the layout"
        else:
            hint = "check the server or store, then run the same command again (it resumes)"
        raise SampleReadError(f"{at}: {cause}; {hint}") from e
    if len(chunk) != length:
        raise SampleReadError(
            f"{at}: read {len(chunk)} bytes, the index says {length}: the shard is truncated or was "
            "replaced; re-publish the layout"
        )
    if crc32 is not None and sample_crc32(chunk) != crc32:
        raise SampleReadError(
            f"{at}: crc32 {sample_crc32(chunk):08x} differs from the index's {crc32:08x}: the shard's "
            "bytes changed after ingest; re-publish the layout"
        )
    out = _members(chunk, key, at)
    if key is not None and out.get("__key__") != key:
        raise SampleReadError(f"{at}: holds {out.get('__key__')!r}, not {key!r}")
    return out
