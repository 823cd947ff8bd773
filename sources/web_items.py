"""What the web (WD) listing hands to the item reader: turns as read from the annotations, items (one per
image) with a listing-time problem or count, and batches of items. `vlamix.sources.web` re-exports them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from vlamix.sources.fields import FieldError, scalar_text, vqa_answer

__all__ = [
    "CAPTION_PROMPT",
    "COUNTERS",
    "ItemBatch",
    "ItemRef",
    "RawTurn",
    "add_counts",
    "answer_text",
    "undecoded_text",
]

CAPTION_PROMPT = "caption en"

# What an item's reading left out or changed without refusing the item; each item record carries them all
# (`counts`), so the pipeline can sum them per dataset:
COUNTERS = (
    "crowd_regions",  # COCO `iscrowd: 1` annotations, left out of the detection targets
    "boxes_clipped",  # boxes a little past the image edge (within EDGE_TOLERANCE), clipped to it
    "boxes_dropped",  # boxes of zero width or height (after clipping): no object to point at
    "boxes_rescaled",  # boxes moved from the annotated size to the file's size (a resized mirror)
    "texts_empty",  # null or empty caption/question/answer values that gave no turn
)


@dataclass(frozen=True)
class RawTurn:
    kind: str  # caption, vqa, detection, pointing, conversation
    prompt: str
    target: str
    boxes: tuple[
        tuple[str, float, float, float, float], ...
    ] = ()  # detection: (label, x, y, w, h) in source pixels
    size: tuple[float, float] | None = None  # detection: (width, height) the boxes were drawn on, if given
    points: tuple[tuple[float, float], ...] = ()  # pointing: (x, y) in source pixels, in order
    where: str = ""  # pointing: the row it was read from (file#row), named when a point is refused


@dataclass(frozen=True)
class ItemRef:
    item: int
    image_id: str
    source_file: str  # image file (relative) or parquet file#row
    path: str  # absolute image file, or parquet file
    row: int = -1  # parquet row holding the image bytes, for hf_parquet (-1: read `path`)
    turns: tuple[RawTurn, ...] = ()
    error: str | None = None  # a listing-time problem: the item is quarantined with it
    error_field: str = "image"  # the field `error` is about
    counts: tuple[tuple[str, int], ...] = ()  # listing-time COUNTERS (crowd regions, empty texts)


@dataclass(frozen=True, order=True)
class ItemBatch:
    dataset: str
    batch: int
    items: tuple[ItemRef, ...]
    split: str
    out: str
    image_column: str = "image"


def add_counts(into: dict[str, int], pairs: Iterable[tuple[str, int]]) -> None:
    for name, n in pairs:
        into[name] = into.get(name, 0) + n


_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by `surrogateescape`


def undecoded_text(turns: Iterable[RawTurn]) -> str | None:
    """The reason to refuse turns holding text that was not UTF-8 in the source, or None."""
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


def answer_text(value: object, what: str) -> str | None:
    """The answer of a VQA value: one text as it is; a list of texts, or of VQAv2 answer structs
    (`{"answer": ..., ...}`), is the human answers and gives their VQAv2 answer (the most common one)."""
    if not isinstance(value, list | tuple | np.ndarray):
        return scalar_text(value, what)
    texts = []
    for k, v in enumerate(value):
        if isinstance(v, dict):
            if "answer" not in v:
                raise FieldError(f"{what}[{k}] is a struct without `answer` (keys {sorted(v)[:6]})")
            v = v["answer"]
        text = scalar_text(v, f"{what}[{k}]")
        if text is not None:
            texts.append(text)
    return vqa_answer(texts)
