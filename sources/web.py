"""Web data (WD): COCO captions, COCO boxes and VQAv2 merged by image id into items, or a Hugging Face
parquet with an image column and text columns. One item per image, however many turns it has."""

from __future__ import annotations

import hashlib
import io
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from vlamix.config import ConfigError
from vlamix.schemas.item import item_key
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.sources.config import SourcesFile, WebSource, resolve_files
from vlamix.transforms.boxes import box_to_padded, location_text
from vlamix.transforms.image import ResizeWithPad, encode_jpeg

__all__ = ["ItemBatch", "ItemRef", "RawTurn", "list_items", "read_items"]

CAPTION_PROMPT = "caption en"
ITEMS_PER_BATCH = 64


@dataclass(frozen=True)
class RawTurn:
    kind: str  # caption, vqa, detection
    prompt: str
    target: str
    boxes: tuple[
        tuple[str, float, float, float, float], ...
    ] = ()  # detection: (label, x, y, w, h) in source pixels


@dataclass(frozen=True)
class ItemRef:
    item: int
    image_id: str
    source_file: str  # image file (relative) or parquet file#row
    path: str  # absolute image file, or parquet file
    row: int = -1  # parquet row holding the image, for hf_parquet
    turns: tuple[RawTurn, ...] = ()
    error: str | None = None  # a listing-time problem: the item is quarantined with it


@dataclass(frozen=True, order=True)
class ItemBatch:
    dataset: str
    batch: int
    items: tuple[ItemRef, ...]
    split: str
    out: str
    image_column: str = "image"


def _load_json(root: Path, rel: str) -> dict:
    path = root / rel
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read annotations: {e}") from e


def _coco_items(sources: SourcesFile, src: WebSource) -> list[ItemRef]:
    root = sources.root
    images: dict[int, str] = {}
    turns: dict[int, list[RawTurn]] = defaultdict(list)
    for ann in src.annotations:
        if ann.format == "vqav2":
            questions = _load_json(root, ann.questions)["questions"]
            answers = {a["question_id"]: a for a in _load_json(root, ann.answers)["annotations"]}
            for q in sorted(questions, key=lambda q: q["question_id"]):
                a = answers.get(q["question_id"])
                if a is not None:
                    turns[q["image_id"]].append(
                        RawTurn(
                            "vqa", f"answer en {q['question'].strip()}", a["multiple_choice_answer"].strip()
                        )
                    )
            continue
        data = _load_json(root, ann.path)
        images |= {im["id"]: im["file_name"] for im in data.get("images", [])}
        if ann.format == "coco_captions":
            for a in sorted(data["annotations"], key=lambda a: a["id"]):
                turns[a["image_id"]].append(
                    RawTurn("caption", CAPTION_PROMPT, " ".join(a["caption"].split()))
                )
        else:
            names = {c["id"]: c["name"] for c in data["categories"]}
            boxes: dict[int, list] = defaultdict(list)
            for a in sorted(data["annotations"], key=lambda a: a["id"]):
                boxes[a["image_id"]].append((names.get(a["category_id"], "?"), *a["bbox"]))
            for image_id, bs in boxes.items():
                labels = " ; ".join(dict.fromkeys(b[0] for b in bs))
                turns[image_id].append(RawTurn("detection", f"detect {labels}", "", tuple(bs)))
    refs = []
    folder = root / src.images
    for k, image_id in enumerate(sorted(set(turns) | set(images))):
        name = images.get(image_id)
        path = folder / name if name else None
        error = None
        if path is None:
            error = f"image id {image_id} has annotations but no entry in any COCO `images` list"
        elif not path.is_file():
            error = f"image file {src.images}/{name} is missing"
        elif not turns.get(image_id):
            error = f"image {name} has no caption, question or box"
        rel = f"{src.images}/{name}" if name else f"{src.images}/?"
        refs.append(
            ItemRef(
                k, str(image_id), rel, str(path) if path else "", -1, tuple(turns.get(image_id, ())), error
            )
        )
    return refs


def _parquet_items(sources: SourcesFile, src: WebSource) -> list[ItemRef]:
    cols = {"image": "image", **src.columns}
    grouped: dict[str, list] = {}
    for path in resolve_files(sources.root, src.path, (".parquet",)):
        rel = str(path.relative_to(sources.root)) if path.is_relative_to(sources.root) else str(path)
        table = pq.read_table(path)
        missing = [c for c in cols.values() if c not in table.column_names]
        if missing:
            raise ConfigError(
                f"{path}: no column(s) {missing}; map them with `columns:` (have {table.column_names})"
            )
        images = table.column(cols["image"]).to_pylist()
        for row, cell in enumerate(images):
            data = cell["bytes"] if isinstance(cell, dict) else cell
            image_id = hashlib.blake2b(data or b"", digest_size=16).hexdigest()  # rows of one image merge
            if "caption" in cols:
                turn = RawTurn(
                    "caption",
                    CAPTION_PROMPT,
                    " ".join(str(table.column(cols["caption"])[row].as_py()).split()),
                )
            else:
                q, a = table.column(cols["question"])[row].as_py(), table.column(cols["answer"])[row].as_py()
                turn = RawTurn("vqa", f"answer en {str(q).strip()}", str(a).strip())
            entry = grouped.setdefault(image_id, [f"{rel}#{row}", str(path), row, []])
            entry[3].append(turn)
    return [
        ItemRef(k, image_id, e[0], e[1], e[2], tuple(e[3])) for k, (image_id, e) in enumerate(grouped.items())
    ]


def list_items(sources: SourcesFile, src: WebSource, out: str) -> list[ItemBatch]:
    refs = _parquet_items(sources, src) if src.format == "hf_parquet" else _coco_items(sources, src)
    column = src.columns.get("image", "image")
    return [
        ItemBatch(src.name, b, tuple(refs[i : i + ITEMS_PER_BATCH]), src.split, out, column)
        for b, i in enumerate(range(0, len(refs), ITEMS_PER_BATCH))
    ]


def _bad(dataset: str, ref: ItemRef, reason: str, field: str | None = None) -> BadRecord:
    return BadRecord(QuarantineRecord(dataset, ref.source_file, reason, None, ref.item, None, field))


def read_items(batch: ItemBatch) -> Iterator[dict | BadRecord]:
    """Item records of a batch, or the BadRecord of an item to quarantine (one bad item never stops the rest)."""
    resize = ResizeWithPad()
    tables: dict[str, object] = {}
    for ref in batch.items:
        if ref.error:
            yield _bad(batch.dataset, ref, ref.error, "image")
            continue
        if ref.row >= 0:
            table = tables.setdefault(ref.path, pq.read_table(ref.path, columns=[batch.image_column]))
            cell = table.column(0)[ref.row].as_py()
            data = cell["bytes"] if isinstance(cell, dict) else cell
        else:
            data = Path(ref.path).read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as im:
                image = np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as e:
            yield _bad(batch.dataset, ref, f"image does not decode: {e}", "image")
            continue
        h, w = image.shape[:2]
        turns, problem = [], None
        for t in ref.turns:
            boxes = []
            for label, x, y, bw, bh in t.boxes:
                if bw <= 0 or bh <= 0 or x < -1 or y < -1 or x + bw > w + 1 or y + bh > h + 1:
                    problem = f"box {[x, y, bw, bh]} of {label!r} lies outside the {w}x{h} image"
                    break
                boxes.append((label, box_to_padded((x, y, bw, bh), h, w, resize)))
            if problem:
                break
            target = location_text(boxes) if t.kind == "detection" else t.target
            if not target:
                problem = f"empty {t.kind} target"
                break
            turns.append(
                {
                    "kind": t.kind,
                    "prompt": t.prompt,
                    "target": target,
                    "boxes": [
                        dict(zip(("label", "y_min", "x_min", "y_max", "x_max"), (lb, *b), strict=True))
                        for lb, b in boxes
                    ]
                    or None,
                }
            )
        if problem:
            yield _bad(batch.dataset, ref, problem, "turns")
            continue
        yield {
            "key": item_key(batch.dataset, ref.item),
            "dataset": batch.dataset,
            "item": ref.item,
            "image_id": ref.image_id,
            "image": encode_jpeg(resize(image)),
            "turns": turns,
            "split": batch.split,
            "content_hash": hashlib.blake2b(data, digest_size=16).hexdigest(),
            "source_file": ref.source_file,
        }
