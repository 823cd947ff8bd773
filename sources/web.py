"""Web data (WD): COCO captions, COCO boxes and VQAv2 merged by image id into items, or a Hugging Face
parquet with an image column and text columns. One item per image, however many turns it has."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vlamix.config import ConfigError
from vlamix.schemas.item import item_key
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.sources.config import SourcesFile, WebSource, resolve_files
from vlamix.sources.frames import one_line, parquet_size_problem
from vlamix.transforms.boxes import box_to_padded, location_text
from vlamix.transforms.image import ResizeWithPad, decode_jpeg, encode_jpeg

__all__ = ["ItemBatch", "ItemRef", "RawTurn", "list_items", "read_item", "read_items"]

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
    error_field: str = "image"  # the field `error` is about


@dataclass(frozen=True, order=True)
class ItemBatch:
    dataset: str
    batch: int
    items: tuple[ItemRef, ...]
    split: str
    out: str
    image_column: str = "image"


_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by `surrogateescape`


def _load_json(root: Path, rel: str) -> dict:
    """An annotation file. Bytes that are not UTF-8 are kept as lone surrogates (`surrogateescape`): one
    bad caption quarantines its item, not the whole file."""
    path = root / rel
    try:
        return json.loads(path.read_bytes().decode("utf-8", "surrogateescape"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read annotations: {e}") from e


def _short(value: object, limit: int = 60) -> str:
    return repr(value)[:limit]


def _is_bbox(value: object) -> bool:
    """[x, y, w, h], four JSON numbers (finiteness and bounds are checked against the image later)."""
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def _coco_items(sources: SourcesFile, src: WebSource) -> list[ItemRef]:
    root = sources.root
    images: dict[int, str] = {}
    turns: dict[int, list[RawTurn]] = defaultdict(list)
    # image id -> (the first problem of one of its annotations, field): the item is quarantined with it
    problems: dict[int, tuple[str, str]] = {}
    for ann in src.annotations:
        if ann.format == "vqav2":
            questions = _load_json(root, ann.questions)["questions"]
            answers = {a["question_id"]: a for a in _load_json(root, ann.answers)["annotations"]}
            for q in sorted(questions, key=lambda q: q["question_id"]):
                a = answers.get(q["question_id"])
                if a is None:
                    continue
                question, answer = q.get("question"), a.get("multiple_choice_answer")
                if not isinstance(question, str) or not isinstance(answer, str):
                    problems.setdefault(
                        q["image_id"],
                        (
                            f"question {q['question_id']}: question {_short(question)} and answer "
                            f"{_short(answer)} must both be strings ({ann.questions}, {ann.answers})",
                            "text",
                        ),
                    )
                    continue
                turns[q["image_id"]].append(RawTurn("vqa", f"answer en {question.strip()}", answer.strip()))
            continue
        data = _load_json(root, ann.path)
        images |= {im["id"]: im["file_name"] for im in data.get("images", [])}
        if ann.format == "coco_captions":
            for a in sorted(data["annotations"], key=lambda a: a["id"]):
                caption = a.get("caption")
                if not isinstance(caption, str):
                    problems.setdefault(
                        a["image_id"],
                        (
                            f"{ann.path} annotation {a['id']}: caption {_short(caption)} is not a string",
                            "text",
                        ),
                    )
                    continue
                turns[a["image_id"]].append(RawTurn("caption", CAPTION_PROMPT, " ".join(caption.split())))
        else:
            names = {c["id"]: c["name"] for c in data["categories"]}
            boxes: dict[int, list] = defaultdict(list)
            for a in sorted(data["annotations"], key=lambda a: a["id"]):
                bbox = a.get("bbox")
                if not _is_bbox(bbox):
                    problems.setdefault(
                        a["image_id"],
                        (
                            f"{ann.path} annotation {a['id']}: bbox {_short(bbox)} is not [x, y, width, "
                            "height], four numbers",
                            "turns",
                        ),
                    )
                    continue
                boxes[a["image_id"]].append((names.get(a["category_id"], "?"), *bbox))
            for image_id, bs in boxes.items():
                labels = " ; ".join(dict.fromkeys(b[0] for b in bs))
                turns[image_id].append(RawTurn("detection", f"detect {labels}", "", tuple(bs)))
    refs = []
    folder = root / src.images
    for k, image_id in enumerate(sorted(set(turns) | set(images) | set(problems))):
        name = images.get(image_id)
        path = folder / name if name else None
        error, field = None, "image"
        if path is None:
            error = f"image id {image_id} has annotations but no entry in any COCO `images` list"
        elif not path.is_file():
            error = f"image file {src.images}/{name} is missing"
        elif image_id in problems:
            error, field = problems[image_id]
            error += ": fix or drop that annotation"
        elif not turns.get(image_id):
            error = f"image {name} has no caption, question or box"
        rel = f"{src.images}/{name}" if name else f"{src.images}/?"
        refs.append(
            ItemRef(
                k,
                str(image_id),
                rel,
                str(path) if path else "",
                -1,
                tuple(turns.get(image_id, ())),
                error,
                field,
            )
        )
    return refs


def _text_column(table: pa.Table, name: str) -> list[str | None]:
    """A text column as str, bytes that are not UTF-8 kept as lone surrogates (see _load_json)."""
    column = table.column(name)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = column.cast(pa.binary())  # decoding an invalid cell must not raise here
    return [
        v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else (None if v is None else str(v))
        for v in column.to_pylist()
    ]


def _read_listing_table(path: Path) -> pa.Table | str:
    """The whole parquet file, or why it cannot be read (the file becomes one quarantined item)."""
    try:
        pf = pq.ParquetFile(path)
        return parquet_size_problem(pf.metadata) or pf.read()
    except (pa.ArrowException, OSError) as e:
        return (
            f"does not read as parquet: {one_line(e)} (truncated or corrupted? re-download or re-export it)"
        )


def _parquet_items(sources: SourcesFile, src: WebSource) -> list[ItemRef]:
    cols = {"image": "image", **src.columns}
    grouped: dict[str, list] = {}
    broken: list[ItemRef] = []
    for path in resolve_files(sources.root, src.path, (".parquet",)):
        rel = str(path.relative_to(sources.root)) if path.is_relative_to(sources.root) else str(path)
        table = _read_listing_table(path)
        if isinstance(table, str):
            broken.append(ItemRef(-1, rel, rel, str(path), -1, (), f"{rel} {table}"))
            continue
        missing = [c for c in cols.values() if c not in table.column_names]
        if missing:
            raise ConfigError(
                f"{path}: no column(s) {missing}; map them with `columns:` (have {table.column_names})"
            )
        images = table.column(cols["image"]).to_pylist()
        texts = {k: _text_column(table, c) for k, c in cols.items() if k != "image"}
        for row, cell in enumerate(images):
            data = cell["bytes"] if isinstance(cell, dict) else cell
            image_id = hashlib.blake2b(data or b"", digest_size=16).hexdigest()  # rows of one image merge
            if "caption" in cols:
                turn = RawTurn("caption", CAPTION_PROMPT, " ".join(str(texts["caption"][row]).split()))
            else:
                q, a = texts["question"][row], texts["answer"][row]
                turn = RawTurn("vqa", f"answer en {str(q).strip()}", str(a).strip())
            entry = grouped.setdefault(image_id, [f"{rel}#{row}", str(path), row, []])
            entry[3].append(turn)
    refs = [
        ItemRef(k, image_id, e[0], e[1], e[2], tuple(e[3])) for k, (image_id, e) in enumerate(grouped.items())
    ]
    return refs + [
        ItemRef(len(refs) + k, b.image_id, b.source_file, b.path, -1, (), b.error)
        for k, b in enumerate(broken)
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
    tables: dict[str, object] = {}
    for ref in batch.items:
        yield read_item(batch, ref, tables)


def _image_bytes(batch: ItemBatch, ref: ItemRef, tables: dict) -> bytes:
    if ref.row < 0:
        return Path(ref.path).read_bytes()
    if ref.path not in tables:
        try:
            tables[ref.path] = pq.read_table(ref.path, columns=[batch.image_column])
        except (pa.ArrowException, OSError) as e:
            raise _bad(
                batch.dataset, ref, f"{ref.path} does not read as parquet: {one_line(e)}", "image"
            ) from e
    cell = tables[ref.path].column(0)[ref.row].as_py()
    return cell["bytes"] if isinstance(cell, dict) else cell


def _undecoded_text(turns: tuple[RawTurn, ...]) -> str | None:
    for t in turns:
        for text in (t.prompt, t.target, *(b[0] for b in t.boxes)):
            bad = _UNDECODED.search(text)
            if bad:
                byte = ord(bad.group()) - 0xDC00
                return (
                    f"{t.kind} text {text.encode('utf-8', 'surrogateescape')[:60]!r} is not UTF-8 (byte "
                    f"0x{byte:02x}): re-write the annotations as UTF-8"
                )
    return None


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except (TypeError, OverflowError):  # not a number, an int too large for a float
        return False


def read_item(batch: ItemBatch, ref: ItemRef, tables: dict) -> dict | BadRecord:
    """One item record, or the BadRecord that quarantines it. `tables` caches parquet files of a batch."""
    resize = ResizeWithPad()
    if ref.error:
        return _bad(batch.dataset, ref, ref.error, ref.error_field)
    problem = _undecoded_text(ref.turns)
    if problem:
        return _bad(batch.dataset, ref, problem, "text")
    try:
        data = _image_bytes(batch, ref, tables)
        if not data:
            return _bad(batch.dataset, ref, "no image bytes (an empty file or a null image cell)", "image")
        image = decode_jpeg(data)
    except BadRecord as bad:
        return bad
    except OSError as e:  # ImageDecodeError: undecodable, or above the pixel cap
        return _bad(batch.dataset, ref, f"image does not decode: {one_line(e)}", "image")
    h, w = image.shape[:2]
    turns, problem = [], None
    for t in ref.turns:
        boxes = []
        for label, x, y, bw, bh in t.boxes:
            if not all(_finite(v) for v in (x, y, bw, bh)):  # NaN passes every comparison below
                problem = (
                    f"box {_short([x, y, bw, bh], 120)} of {label!r} has a coordinate that is not finite"
                )
                break
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
        return _bad(batch.dataset, ref, problem, "turns")
    return {
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
