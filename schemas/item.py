"""The item record: one row per web image, with every caption, question and box set about it as turns."""

from __future__ import annotations

import pyarrow as pa

from vlamix.schemas.checks import key_pattern, one_of
from vlamix.schemas.frame import SPLITS
from vlamix.schemas.versioning import RecordSchema, doc_field

__all__ = ["BOX", "ITEM", "TURN", "TURN_KINDS", "item_key"]

TURN_KINDS = ("caption", "vqa", "detection", "pointing", "conversation")


def item_key(dataset: str, item: int) -> str:
    return f"{dataset}/{item:08d}"


BOX = pa.struct(
    [
        pa.field("label", pa.string(), nullable=False),
        pa.field("y_min", pa.float32(), nullable=False),
        pa.field("x_min", pa.float32(), nullable=False),
        pa.field("y_max", pa.float32(), nullable=False),
        pa.field("x_max", pa.float32(), nullable=False),
    ]
)
TURN = pa.struct(
    [
        pa.field("kind", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("target", pa.string(), nullable=False),
        pa.field("boxes", pa.list_(BOX), nullable=True),
    ]
)

ITEM = RecordSchema(
    name="item",
    version=1,
    doc="One row per web image, written by extract. Caption, VQA and detection sets over the same images "
    "merge by image id into one item with many turns: images are never duplicated.",
    fields=(
        doc_field("key", pa.string(), "`{dataset}/{item:08d}`: unique within a layout."),
        doc_field("dataset", pa.string(), "Dataset name from the sources file (`[a-z0-9_]+`)."),
        doc_field(
            "item", pa.int64(), "Item index within the dataset (stable across runs: sorted by image id)."
        ),
        doc_field("image_id", pa.string(), "The source's own image id (COCO id, file name, row id)."),
        doc_field("image", pa.binary(), "JPEG of the image, resized with padding to 224x224."),
        doc_field(
            "turns",
            pa.list_(TURN),
            "Turns about this image: `kind` (caption, vqa, detection, pointing or conversation), `prompt`, "
            "`target` text, and for detection the `boxes` (label and y_min, x_min, y_max, x_max in [0, 1] of "
            "the stored, padded image); pointing targets hold the points as `<locY><locX>` pairs of the "
            "padded image, with `boxes` null.",
        ),
        doc_field("split", pa.string(), "train, val or test."),
        doc_field(
            "content_hash",
            pa.string(),
            "Content hash (blake2b-128, hex) of the image bytes: equal images are duplicates.",
        ),
        doc_field(
            "source_file", pa.string(), "Raw file the image was read from, relative to the sources file."
        ),
    ),
    checks=(one_of("split", SPLITS), key_pattern(r"^[a-z0-9_]+/\d{8}$", "dataset/00001234")),
)
