from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import SAMPLES, items_as_written
from PIL import Image

from vlamix.schemas.item import ITEM
from vlamix.schemas.quarantine import BadRecord
from vlamix.sources.config import load_sources
from vlamix.sources.synthetic.wd_samples import generate_wd
from vlamix.sources.web import list_items, read_items
from vlamix.transforms.boxes import box_to_padded, location_text, parse_locations
from vlamix.transforms.image import ResizeWithPad, decode_jpeg


def _items(sources, name):
    src = next(w for w in sources.web if w.name == name)
    out = []
    for batch in list_items(sources, src, "/unused"):
        out += items_as_written(read_items(batch))
    return out


def test_coco_captions_vqa_and_boxes_merge_into_one_item_per_image():
    sources = load_sources(SAMPLES / "sources.yaml")
    items = _items(sources, "web_coco")
    assert len(items) == 6 and not [i for i in items if isinstance(i, BadRecord)]
    ITEM.table(items)
    astronaut = next(i for i in items if i["image_id"] == "101")
    kinds = [t["kind"] for t in astronaut["turns"]]
    assert kinds.count("caption") == 2 and kinds.count("vqa") == 2 and kinds.count("detection") == 1
    vqa = next(t for t in astronaut["turns"] if t["kind"] == "vqa")
    assert vqa == {
        "kind": "vqa",
        "prompt": "answer en what color is the flight suit?",
        "target": "orange",
        "boxes": None,
    }
    det = next(t for t in astronaut["turns"] if t["kind"] == "detection")
    assert det["prompt"] == "detect person ; helmet ; space shuttle"
    assert [b["label"] for b in det["boxes"]] == ["person", "helmet", "space shuttle"]


def test_boxes_stay_on_their_objects_after_resize_with_pad():
    """Crop the box from the original photo and from the stored padded image: same picture."""
    sources = load_sources(SAMPLES / "sources.yaml")
    items = {i["image_id"]: i for i in _items(sources, "web_coco")}
    coco = json.loads((SAMPLES / "web_coco" / "instances.json").read_text())
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    for ann in coco["annotations"]:
        original = np.asarray(
            Image.open(SAMPLES / "web_coco" / "images" / files[ann["image_id"]]).convert("RGB")
        )
        x, y, w, h = ann["bbox"]
        want = np.asarray(
            Image.fromarray(original[int(y) : int(y + h), int(x) : int(x + w)]).resize((16, 16))
        ).astype(float)
        stored = decode_jpeg(items[str(ann["image_id"])]["image"])
        det = next(t for t in items[str(ann["image_id"])]["turns"] if t["kind"] == "detection")
        box = next(
            b
            for b in det["boxes"]
            if abs(b["x_min"] - box_to_padded(ann["bbox"], *original.shape[:2])[1]) < 1e-6
            and b["label"] in det["prompt"]
        )
        y0, x0, y1, x1 = (round(box[k] * 224) for k in ("y_min", "x_min", "y_max", "x_max"))
        got = np.asarray(Image.fromarray(stored[y0:y1, x0:x1]).resize((16, 16))).astype(float)
        assert np.abs(got - want).mean() < 20, (files[ann["image_id"]], ann["bbox"])


def test_location_tokens_round_trip():
    box = box_to_padded((40, 10, 100, 50), 120, 160)
    _, _, new_w, top, _ = ResizeWithPad().geometry(120, 160)
    assert box[0] == pytest.approx((top + 10 * new_w / 160) / 224)  # y first, offset by the top bar
    text = location_text([("cup", box), ("dog", (0.0, 0.5, 0.999, 1.0))])
    assert text.startswith("<loc") and text.count("<loc") == 8 and text.endswith(" dog")
    back = parse_locations(text)
    assert [b[0] for b in back] == ["cup", "dog"]
    np.testing.assert_allclose(back[0][1], box, atol=1 / 1024)


def test_hf_parquet_rows_of_one_image_merge():
    sources = load_sources(SAMPLES / "sources.yaml")
    items = _items(sources, "web_parquet")
    assert len(items) == 3
    coffee = next(i for i in items if len(i["turns"]) == 2)
    assert {t["target"] for t in coffee["turns"]} == {
        "an espresso cup seen from above",
        "coffee with crema in a white cup",
    }


def test_bad_items_are_quarantined_one_by_one(tmp_path, write_sources):
    shutil.copytree(SAMPLES / "web_coco", tmp_path / "web")
    (tmp_path / "web" / "images" / "000000000104.jpg").unlink()  # rocket: missing file
    (tmp_path / "web" / "images" / "000000000106.jpg").write_bytes(b"\xff\xd8 broken")  # hubble: undecodable
    coco = json.loads((tmp_path / "web" / "instances.json").read_text())
    coco["annotations"][0]["bbox"] = [10, 10, 5000, 20]  # astronaut: a box off the image
    (tmp_path / "web" / "instances.json").write_text(json.dumps(coco))
    sources = load_sources(
        write_sources(
            tmp_path,
            """
            datasets:
              - name: web
                kind: WD
                images: web/images
                annotations:
                  - {format: coco_captions, path: web/captions.json}
                  - {format: coco_detection, path: web/instances.json}
            """,
        )
    )
    items = _items(sources, "web")
    bad = {b.record.source_file: b.record for b in items if isinstance(b, BadRecord)}
    assert len(items) == 6 and len(bad) == 3
    assert "missing" in bad["web/images/000000000104.jpg"].reason
    assert "does not decode" in bad["web/images/000000000106.jpg"].reason
    assert (
        "lies outside the" in bad["web/images/000000000101.jpg"].reason
        and bad["web/images/000000000101.jpg"].item == 0
    )


def test_wd_samples_regenerate_identically(tmp_path):
    for folder in generate_wd(tmp_path):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            assert path.read_bytes() == (SAMPLES / path.relative_to(tmp_path)).read_bytes(), path
