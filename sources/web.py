"""Web data (WD): COCO captions, COCO boxes and VQAv2 merged by image id into items (sources/web_coco.py),
a Hugging Face parquet with an image column and text or points columns (sources/web_parquet.py,
sources/web_points.py), or LLaVA-style conversations (sources/web_llava.py). One item per image, however
many turns it has.

Each item record carries `counts` (sources/web_items.py COUNTERS): what its reading left out or changed
without refusing it (crowd regions, clipped, dropped and rescaled boxes, empty texts). The ITEM schema does
not store them; the pipeline sums them into its counters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from vlamix.schemas.image_codec import decode_jpeg
from vlamix.schemas.item import item_key
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.sources.config import SourcesFile, WebSource
from vlamix.sources.fields import FieldError
from vlamix.sources.frames import one_line
from vlamix.sources.location import Unreachable, locate, read_bytes, readable
from vlamix.sources.web_boxes import fit_boxes
from vlamix.sources.web_coco import coco_items
from vlamix.sources.web_items import (
    CAPTION_PROMPT,
    COUNTERS,
    ItemBatch,
    ItemRef,
    RawTurn,
    add_counts,
    undecoded_text,
)
from vlamix.sources.web_llava import llava_items
from vlamix.sources.web_parquet import image_cell_bytes, parquet_items
from vlamix.sources.web_points import PointError, fit_points

__all__ = [
    "CAPTION_PROMPT",
    "COUNTERS",
    "ItemBatch",
    "ItemRef",
    "RawTurn",
    "list_items",
    "read_item",
    "read_items",
]

ITEMS_PER_BATCH = 64
_LISTERS = {"coco": coco_items, "hf_parquet": parquet_items, "llava_json": llava_items}


def list_items(sources: SourcesFile, src: WebSource, out: str) -> list[ItemBatch]:
    refs = _LISTERS[src.format](sources, src)
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
        try:
            yield read_item(batch, ref, tables)
        except BadRecord as bad:
            yield bad


def _image_bytes(batch: ItemBatch, ref: ItemRef, tables: dict) -> bytes | None:
    if ref.row < 0:
        try:
            return read_bytes(locate("/", ref.path))
        except Unreachable as e:
            raise _bad(batch.dataset, ref, one_line(e), "image") from e
        except OSError as e:
            raise _bad(batch.dataset, ref, f"image file cannot be read: {one_line(e)}", "image") from e
    if ref.path not in tables:
        try:
            with readable(ref.path) as where:
                tables[ref.path] = pq.read_table(where, columns=[batch.image_column])
        except Unreachable as e:
            raise _bad(batch.dataset, ref, one_line(e), "image") from e
        except (pa.ArrowException, OSError) as e:
            raise _bad(
                batch.dataset, ref, f"{ref.path} does not read as parquet: {one_line(e)}", "image"
            ) from e
    return image_cell_bytes(tables[ref.path].column(0)[ref.row].as_py())


def _turn(t: RawTurn, height: int, width: int, counts: dict) -> dict | None:
    """One turn as read: a detection turn keeps its boxes in the image's own pixels (`pixel_boxes`,
    label and COCO x, y, w, h), a pointing turn its points (`pixel_points`, x, y), and both get their
    target from the extract step (transforms/web_item.py); a detection turn whose boxes were all dropped
    is None. Raises FieldError (PointError: a point outside the image)."""
    if t.kind == "detection":
        fitted = fit_boxes(t.boxes, t.size, width, height)
        add_counts(
            counts,
            [
                ("boxes_clipped", fitted.clipped),
                ("boxes_dropped", fitted.dropped),
                ("boxes_rescaled", fitted.rescaled),
            ],
        )
        if not fitted.boxes:
            return None
        prompt = "detect " + " ; ".join(dict.fromkeys(label for label, *_ in fitted.boxes))
        return {
            "kind": t.kind,
            "prompt": prompt,
            "target": None,
            "pixel_boxes": [tuple(b) for b in fitted.boxes],
            "pixel_points": None,
        }
    if t.kind == "pointing":
        points = fit_points(t.points, width, height, t.where)
        return {
            "kind": t.kind,
            "prompt": t.prompt,
            "target": None,
            "pixel_boxes": None,
            "pixel_points": list(points),
        }
    if not t.target:
        raise FieldError(f"empty {t.kind} target")
    return {"kind": t.kind, "prompt": t.prompt, "target": t.target, "pixel_boxes": None, "pixel_points": None}


def read_item(batch: ItemBatch, ref: ItemRef, tables: dict) -> dict:
    """One item as read: the ITEM record with its image as the native HxWx3 frame and detection boxes in
    its pixels (the extract step pads, encodes and writes the location text: transforms/web_item.py).
    Raises the BadRecord that quarantines it (as every reader does). `tables` caches parquet files of a
    batch."""
    if ref.error:
        raise _bad(batch.dataset, ref, ref.error, ref.error_field)
    problem = undecoded_text(ref.turns)
    if problem:
        raise _bad(batch.dataset, ref, problem, "text")
    try:
        data = _image_bytes(batch, ref, tables)
        if not data:
            raise _bad(batch.dataset, ref, "no image bytes (an empty file or a null image cell)", "image")
        image = decode_jpeg(data)
    except OSError as e:  # ImageDecodeError: undecodable, or above the pixel cap
        raise _bad(batch.dataset, ref, f"image does not decode: {one_line(e)}", "image") from e
    h, w = image.shape[:2]
    counts = dict.fromkeys(COUNTERS, 0)
    add_counts(counts, ref.counts)
    turns = []
    for t in ref.turns:
        try:
            turn = _turn(t, h, w, counts)
        except PointError as e:
            raise _bad(batch.dataset, ref, str(e), "points") from e
        except FieldError as e:
            raise _bad(batch.dataset, ref, str(e), "turns") from e
        if turn is not None:
            turns.append(turn)
    if not turns:
        dropped = counts["boxes_dropped"]
        reason = (
            f"no turn left: all {dropped} boxes have zero width or height on the {w}x{h} image (after "
            "clipping to it) and there is no caption or question"
            if dropped
            else "no caption, question or box to train on"
        )
        raise _bad(batch.dataset, ref, reason, "turns")
    return {
        "key": item_key(batch.dataset, ref.item),
        "dataset": batch.dataset,
        "item": ref.item,
        "image_id": ref.image_id,
        "image": image,
        "turns": turns,
        "split": batch.split,
        "content_hash": hashlib.blake2b(data, digest_size=16).hexdigest(),
        "source_file": ref.source_file,
        "counts": counts,
    }
