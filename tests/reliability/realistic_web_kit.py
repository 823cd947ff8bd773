"""Small real web files for tests/reliability/test_realistic_web.py: PNGs of any mode (a 16-bit RGB PNG is
written by hand: Pillow cannot make one), Hugging Face-style parquet files, COCO-style JSON, and a reader
that lists and reads one dataset the way the pipeline does (no ingest)."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import items_as_written
from PIL import Image

from vlamix.schemas.quarantine import BadRecord
from vlamix.sources.config import load_sources
from vlamix.sources.web import list_items, read_items

__all__ = [
    "IMAGE_STRUCT",
    "coco_dataset",
    "encode",
    "hf_dataset",
    "png_rgb16",
    "read_web",
    "solid",
    "split",
]

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def encode(im: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **options)
    return buf.getvalue()


def solid(width: int, height: int, rgb: tuple[int, int, int] = (90, 140, 200), fmt: str = "PNG") -> bytes:
    return encode(Image.new("RGB", (width, height), rgb), fmt)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_rgb16(pixels: np.ndarray, claim: tuple[int, int] | None = None) -> bytes:
    """A 48-bit RGB PNG of HxWx3 uint16 `pixels`; `claim` (width, height) overrides the header's size."""
    h, w, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))
    cw, ch = claim or (w, h)
    header = struct.pack(">IIBBBBB", cw, ch, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def _sources(root: Path, entry: str) -> Path:
    path = root / "sources.yaml"
    path.write_text(f"datasets:\n  - {entry}\n")
    return path


def hf_dataset(
    root: Path, columns: dict[str, pa.Array], mapping: str = "{image: image, caption: text}"
) -> Path:
    """One parquet file `root/web/train.parquet` of these columns, and the sources file reading it."""
    (root / "web").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), root / "web" / "train.parquet")
    return _sources(root, f"{{name: web, kind: WD, format: hf_parquet, path: web, columns: {mapping}}}")


def coco_dataset(
    root: Path,
    files: dict[str, bytes],
    images: list[dict],
    captions: list[dict] | None = None,
    instances: dict | None = None,
    vqa: tuple[list[dict], list[dict]] | None = None,
) -> Path:
    """`root/coco/` with image files and the annotation files given, and the sources file reading them."""
    folder = root / "coco"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / "images" / name).write_bytes(data)
    anns = []
    if captions is not None:
        (folder / "captions.json").write_text(json.dumps({"images": images, "annotations": captions}))
        anns.append("{format: coco_captions, path: coco/captions.json}")
    if instances is not None:
        (folder / "instances.json").write_text(json.dumps({"images": images, **instances}))
        anns.append("{format: coco_detection, path: coco/instances.json}")
    if vqa is not None:
        (folder / "questions.json").write_text(json.dumps({"questions": vqa[0]}))
        (folder / "answers.json").write_text(json.dumps({"annotations": vqa[1]}))
        anns.append("{format: vqav2, questions: coco/questions.json, answers: coco/answers.json}")
    return _sources(root, f"{{name: web, kind: WD, images: coco/images, annotations: [{', '.join(anns)}]}}")


def read_web(sources_path: Path) -> list[dict | BadRecord]:
    """Every item of the one web dataset of a sources file, listed and read as the pipeline does."""
    sources = load_sources(sources_path)
    out: list[dict | BadRecord] = []
    for batch in list_items(sources, sources.web[0], "/unused"):
        out += items_as_written(read_items(batch))
    return out


def split(records: list[dict | BadRecord]) -> tuple[list[dict], list]:
    """(item records, quarantine records)."""
    good = [r for r in records if not isinstance(r, BadRecord)]
    return good, [r.record for r in records if isinstance(r, BadRecord)]
