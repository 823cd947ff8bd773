"""TFRecord files without TensorFlow: each record is a little-endian uint64 length, the masked CRC32C of
those 8 bytes, the data, and the masked CRC32C of the data. Both checksums are verified on read."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import google_crc32c

from vlamix.sources.location import locate, open_file

__all__ = ["TFRecordError", "masked_crc", "read_record_at", "scan_records", "write_records"]

_MASK_DELTA = 0xA282EAD8
# a listing reads only the 12-byte headers: at a URL each costs one range request of this size
SCAN_BLOCK_BYTES = 64 << 10


class TFRecordError(ValueError):
    """A truncated or corrupted TFRecord file; names the file, the record and its byte offset."""


def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _read_header(f, path: str | Path, index: int, offset: int) -> int | None:
    header = f.read(12)
    if not header:
        return None
    if len(header) < 12:
        raise TFRecordError(
            f"{path}: record {index} at byte {offset}: truncated header ({len(header)} of 12 bytes)"
        )
    length, crc = struct.unpack("<QI", header)
    if masked_crc(header[:8]) != crc:
        raise TFRecordError(
            f"{path}: record {index} at byte {offset}: length checksum mismatch (corrupted file?)"
        )
    return length


def _where(path: str | Path) -> Path:
    return path if isinstance(path, Path) else locate("/", path)


def scan_records(path: str | Path) -> Iterator[tuple[int, int, int]]:
    """(index, byte offset, data length) of every record, checking the length framing but not reading
    the data (cheap: a listing step needs only where episodes are)."""
    with open_file(_where(path), block=SCAN_BLOCK_BYTES) as f:
        size = f.seek(0, io.SEEK_END)
        f.seek(0)
        index = offset = 0
        while (length := _read_header(f, path, index, offset)) is not None:
            end = offset + 12 + length + 4
            if end > size:
                raise TFRecordError(
                    f"{path}: record {index} at byte {offset}: truncated data ({size - offset - 12} of {length + 4} bytes)"
                )
            yield index, offset, length
            f.seek(end)
            index, offset = index + 1, end


def read_record_at(path: str | Path, offset: int, index: int = 0) -> bytes:
    """The data of the record that starts at `offset`, with both checksums verified."""
    with open_file(_where(path)) as f:
        size = f.seek(0, io.SEEK_END)
        f.seek(offset)
        length = _read_header(f, path, index, offset)
        if length is None:
            raise TFRecordError(f"{path}: no record at byte {offset}")
        left = size - offset - 12
        if length + 4 > left:  # checked before reading: a corrupted length may claim up to 2**64 bytes
            raise TFRecordError(
                f"{path}: record {index} at byte {offset}: truncated data ({max(left, 0)} of {length + 4} bytes)"
            )
        data = f.read(length)
        tail = f.read(4)
        if len(data) < length or len(tail) < 4:  # the file shrank since
            raise TFRecordError(f"{path}: record {index} at byte {offset}: truncated data")
        if masked_crc(data) != struct.unpack("<I", tail)[0]:
            raise TFRecordError(
                f"{path}: record {index} at byte {offset}: data checksum mismatch (corrupted file?)"
            )
        return data


def write_records(path: str | Path, records: Iterable[bytes]) -> int:
    """Write records with TFRecord framing; returns how many."""
    n = 0
    with Path(path).open("wb") as f:
        for data in records:
            header = struct.pack("<Q", len(data))
            f.write(
                header + struct.pack("<I", masked_crc(header)) + data + struct.pack("<I", masked_crc(data))
            )
            n += 1
    return n
