"""A web item as a reader gives it -> the ITEM record's form, run by the extract step: the image resized
with padding and JPEG-encoded, each detection turn's boxes and each pointing turn's points moved from the
image's pixels to the padded image's [0, 1] coordinates and spoken as location tokens
(transforms/boxes.py). No inverse beyond the pieces' own (`ResizeWithPad.unpad`, `parse_locations`,
`parse_points` + `padded_to_point`): JPEG is lossy. A pointing turn keeps its points in its target text
alone (`boxes` is null: the ITEM schema has no points field)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vlamix.schemas.image_codec import encode_jpeg
from vlamix.transforms.boxes import box_to_padded, location_text, point_text, point_to_padded
from vlamix.transforms.image import ResizeWithPad

__all__ = ["PadItem"]

BOX_FIELDS = ("label", "y_min", "x_min", "y_max", "x_max")


@dataclass(frozen=True)
class PadItem:
    resize: ResizeWithPad = field(default_factory=ResizeWithPad)

    def _turn(self, turn: dict, height: int, width: int) -> dict:
        if turn.get("pixel_points") is not None:
            points = [point_to_padded(xy, height, width, self.resize) for xy in turn["pixel_points"]]
            return {
                "kind": turn["kind"],
                "prompt": turn["prompt"],
                "target": point_text(points),
                "boxes": None,
            }
        if turn["pixel_boxes"] is None:
            return {"kind": turn["kind"], "prompt": turn["prompt"], "target": turn["target"], "boxes": None}
        boxes = [
            (label, box_to_padded(xywh, height, width, self.resize)) for label, *xywh in turn["pixel_boxes"]
        ]
        return {
            "kind": turn["kind"],
            "prompt": turn["prompt"],
            "target": location_text(boxes),
            "boxes": [dict(zip(BOX_FIELDS, (label, *box), strict=True)) for label, box in boxes] or None,
        }

    def __call__(self, item: dict) -> dict:
        height, width = item["image"].shape[:2]
        turns = [self._turn(t, height, width) for t in item["turns"]]
        return {**item, "image": encode_jpeg(self.resize(item["image"])), "turns": turns}
