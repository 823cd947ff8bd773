"""Bad web items: COCO-style (an images folder, captions.json and instances.json) and Hugging Face
parquet (one file per case, so a case can also break the file). Each case is one image with its
caption (and a box, for COCO), broken in one way; the raw caption bytes go into the JSON as they are."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from corpus_kit import Case, Format, Quarantined, bomb_jpeg, bomb_png, flip, jpeg, png_text_bomb, truncate

__all__ = ["CASES", "COCO", "HF"]


@dataclass(frozen=True)
class Item:
    """A web case: its image bytes (None: a small unique JPEG), `missing` (no image file, or a null
    parquet cell), caption bytes (any bytes: they go into the annotation file raw; empty: a plain
    caption), a COCO box (x, y, w, h), and for parquet a change to the written file."""

    image: bytes | None = None
    missing: bool = False
    caption: bytes = b""
    box: tuple[float, float, float, float] | None = (2.0, 2.0, 12.0, 10.0)
    ext: str = "jpg"
    file: object = None  # Callable[[Path], None] for hf_parquet cases


def _good(k: int) -> Item:
    return Item(jpeg(70 + 20 * k, seed=500 + k), caption=f"a good photo number {k}".encode())


def _fill(case: Case) -> Item:
    """The case's item, with a unique image and a caption where it gives none."""
    item: Item = case.make
    image = item.image or jpeg(90, seed=zlib.crc32(case.name.encode()) % 1000)
    caption = item.caption or f"a photo for {case.name}".encode()
    return Item(None if item.missing else image, item.missing, caption, item.box, item.ext, item.file)


# ---- COCO ----------------------------------------------------------------------------------------


def _write_coco(root: Path, rel: str, cases: list[Case], goods: int) -> dict[str, str]:
    folder = root / rel
    (folder / "images").mkdir(parents=True, exist_ok=True)
    named = [(f"good_{k}", _good(k)) for k in range(goods)] + [(c.name, _fill(c)) for c in cases]
    images, captions, boxes, raw, out = [], [], [], {}, {}
    for k, (name, item) in enumerate(named):
        file = f"{name}.{item.ext}"
        if item.image is not None:
            (folder / "images" / file).write_bytes(item.image)
        images.append({"id": k, "file_name": file, "width": 32, "height": 32})
        captions.append({"id": k, "image_id": k, "caption": f"@@caption{k}@@"})
        raw[f'"@@caption{k}@@"'.encode()] = b'"' + item.caption + b'"'
        if item.box is not None:
            boxes.append({"id": k, "image_id": k, "category_id": 1, "bbox": list(item.box)})
        out[name] = f"{rel}/images/{file}"
    text = json.dumps({"images": images, "annotations": captions}).encode()
    for placeholder, value in raw.items():
        text = text.replace(placeholder, value)
    (folder / "captions.json").write_bytes(text)
    instances = {"images": images, "annotations": boxes, "categories": [{"id": 1, "name": "thing"}]}
    (folder / "instances.json").write_text(json.dumps(instances))
    return out


def _coco_entry(name: str, rel: str, robot: str | None = None) -> str:
    return (
        f"{{name: {name}, kind: WD, images: {rel}/images, annotations: ["
        f"{{format: coco_captions, path: {rel}/captions.json}}, {{format: coco_detection, path: {rel}/instances.json}}]}}"
    )


def _coco(name: str, expect: Quarantined, **item) -> Case:
    return Case(name, "web_coco", Item(**item), expect)


# ---- Hugging Face parquet -----------------------------------------------------------------------


def _text_array(value: bytes) -> pa.Array:
    """A one-row string array holding `value` as it is, valid UTF-8 or not (as a broken writer leaves it)."""
    offsets = pa.py_buffer(np.array([0, len(value)], np.int32).tobytes())
    return pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(value)])


def _write_hf(root: Path, rel: str, cases: list[Case], goods: int) -> dict[str, str]:
    folder = root / rel
    folder.mkdir(parents=True, exist_ok=True)
    named = [(f"good_{k}", _good(k)) for k in range(goods)] + [(c.name, _fill(c)) for c in cases]
    out = {}
    for name, item in named:
        path = folder / f"{name}.parquet"
        cell = None if item.missing else {"bytes": item.image, "path": f"{name}.jpg"}
        image = pa.array([cell], pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        pq.write_table(pa.table({"image": image, "text": _text_array(item.caption)}), path)
        out[name] = f"{rel}/{name}.parquet#0"
        if item.file is not None:
            item.file(path)
            out[name] = f"{rel}/{name}.parquet"
    return out


def _hf_entry(name: str, rel: str, robot: str | None = None) -> str:
    return f"{{name: {name}, kind: WD, format: hf_parquet, path: {rel}, columns: {{image: image, caption: text}}}}"


def _hf(name: str, expect: Quarantined, **item) -> Case:
    return Case(name, "web_hf_parquet", Item(**item), expect)


def _corrupt_footer(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(flip(data, len(data) - 60, 16))


_NOT_UTF8 = "caption text .* is not UTF-8 \\(byte 0xff\\)"
CASES = [
    _coco("web_image_undecodable", Quarantined("image does not decode", "image"), image=b"\xff\xd8 broken"),
    _coco("web_image_bomb", Quarantined("above the cap of 50 MP", "image"), image=bomb_png(), ext="png"),
    _coco("web_image_60mp", Quarantined("above the cap of 50 MP", "image"), image=bomb_jpeg(10000, 6000)),
    _coco(
        "web_png_text_bomb",
        Quarantined("image does not decode: .*MAX_TEXT_CHUNK", "image"),
        image=png_text_bomb(),
        ext="png",
    ),
    _coco("web_caption_not_utf8", Quarantined(_NOT_UTF8, "text"), caption=b"a cat on a \xff\xfe mat"),
    _coco(
        "web_box_outside",
        Quarantined(r"box \[10.0, 10.0, 5000.0, 20.0\] .* lies outside the 32x32 image", "turns"),
        box=(10.0, 10.0, 5000.0, 20.0),
    ),
    _coco(
        "web_image_missing",
        Quarantined(r"image file .*web_image_missing\.jpg is missing", "image"),
        missing=True,
    ),
    _coco(
        "web_caption_replacement_char",
        Quarantined("^quality gate: expect_column_values_to_not_match_regex failed on text", "text"),
        caption="a c\ufffdt on a mat".encode(),
    ),
    _hf("hf_image_undecodable", Quarantined("image does not decode", "image"), image=b"GIF89a broken"),
    _hf("hf_image_bomb", Quarantined("above the cap of 50 MP", "image"), image=bomb_jpeg()),
    _hf("hf_image_null", Quarantined("no image bytes", "image"), missing=True),
    _hf("hf_caption_not_utf8", Quarantined(_NOT_UTF8, "text"), caption=b"a dog \xff\xfe on grass"),
    _hf("hf_parquet_truncated", Quarantined(r"\.parquet does not read as parquet", "image"), file=truncate),
    _hf(
        "hf_parquet_corrupt_footer",
        Quarantined(r"\.parquet does not read as parquet", "image"),
        file=_corrupt_footer,
    ),
]

COCO = Format("web_coco", _write_coco, _coco_entry)
HF = Format("web_hf_parquet", _write_hf, _hf_entry)
