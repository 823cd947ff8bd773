"""What a bad-input case is, and the bytes the cases are made of: tiny images, decompression bombs (a few
hundred bytes whose header claims 30000x30000 pixels), flipped and truncated files. Nothing here is big:
every input is generated from good samples at test time."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "BOMB_SIDE",
    "Case",
    "Data",
    "Format",
    "Quarantined",
    "Target",
    "bomb_jpeg",
    "bomb_png",
    "flip",
    "jpeg",
    "png_text_bomb",
    "smooth",
    "truncate",
]

BOMB_SIDE = 30000  # 900 MP: 2.7 GB of RGB from a few hundred bytes


@dataclass(frozen=True)
class Quarantined:
    """The expected quarantine record: `reason` is a regex searched in its reason."""

    reason: str
    field: str | None = None
    frame: int | None = None


@dataclass(frozen=True)
class Data:
    """A legitimate oddity: written, not quarantined. `check(rows)` looks at its frame rows (robot data)."""

    check: Callable[[list[dict]], None] | None = None


@dataclass(frozen=True)
class Case:
    name: str
    reader: str  # a key of corpus.FORMATS
    make: Callable  # what the reader's writer takes to write this case (see each corpus_<reader>.py)
    expect: Quarantined | Data

    @property
    def bad(self) -> bool:
        return isinstance(self.expect, Quarantined)


@dataclass(frozen=True)
class Target:
    """The robot episodes annotation cases point into: written ones, a quarantined one, an unknown one."""

    written: tuple[int, ...]
    frames: int
    fps: float
    quarantined: int
    unknown: int = 999


@dataclass(frozen=True)
class Format:
    """How a reader's cases become one dataset: `write(root, rel, cases, goods)` writes them and `goods`
    good episodes or items under `root / rel` and returns {case name or good_<k>: the source_file its
    record carries}; annotation formats also take the Target and the robot dataset's name. `entry(name,
    rel, robot)` is the dataset's sources.yaml entry."""

    name: str
    write: Callable[..., dict[str, str]]
    entry: Callable[[str, str, str], str]


def jpeg(value: int = 90, size: tuple[int, int] = (32, 32), seed: int = 0) -> bytes:
    """A small real JPEG: a gradient plus a seeded speck, so that no two cases share image bytes."""
    h, w = size
    image = np.full((h, w, 3), value, np.uint8)
    image[:, :, 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    image[seed % h, (seed // h) % w] = (255, 0, 255)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def bomb_jpeg(width: int = BOMB_SIDE, height: int = BOMB_SIDE) -> bytes:
    """A tiny JPEG whose frame header (SOF0) claims `width` x `height`."""
    data = bytearray(jpeg(7, (8, 8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int = BOMB_SIDE, height: int = BOMB_SIDE) -> bytes:
    """A PNG header claiming `width` x `height` RGB, with a token of image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )


@cache
def png_text_bomb() -> bytes:
    """A real 16x16 PNG with a zTXt chunk that inflates to 16 MB (16 KB on disk)."""
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, "PNG")
    png = buf.getvalue()
    ztxt = _png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"A" * (16 << 20), 9))
    return png[:33] + ztxt + png[33:]  # after the signature and IHDR


def flip(data: bytes, offset: int, n: int = 8) -> bytes:
    """`data` with `n` bytes from `offset` inverted."""
    out = bytearray(data)
    for k in range(offset, offset + n):
        out[k] ^= 0xFF
    return bytes(out)


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def smooth(frames: int, width: int, seed: int, scale: float = 0.3) -> np.ndarray:
    """(frames, width) slow sinusoids: state and action that pass every range and FAST's fit."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None] / 10.0
    return (scale * np.sin(t * rng.uniform(0.5, 1.5, width) + rng.uniform(0, 6, width))).astype(np.float32)
