"""Realistic web (WD) data (issue 18): no value of a caption, answer, image or box turned silently into the
wrong thing. Each case writes real files (Pillow, pyarrow, JSON), lists and reads them as the pipeline does,
and checks the exact output: turn texts, box coordinates and location tokens, decoded pixel values, or the
quarantine reason."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from realistic_web_kit import (
    IMAGE_STRUCT,
    coco_dataset,
    encode,
    hf_dataset,
    png_rgb16,
    read_web,
    solid,
    split,
)

from vlamix.config import ConfigError
from vlamix.sources.config import load_sources
from vlamix.transforms.image import ImageDecodeError, decode_jpeg, to_rgb

# A 224x224 image: the stored image is the file itself (no bars), so a box's [0, 1] coordinates are its
# pixels / 224. [22.4, 44.8, 112, 56] spans y 0.2..0.45 and x 0.1..0.6: bins 204, 102, 460, 614.
BOX = [22.4, 44.8, 112.0, 56.0]
BOX_TARGET = "<loc0204><loc0102><loc0460><loc0614> cup"
CATEGORIES = [{"id": 1, "name": "cup"}, {"id": 2, "name": "person"}]


def _image(id_, name, size=(224, 224)):
    return {"id": id_, "file_name": name, "width": size[0], "height": size[1]}


def _box(id_, image_id, bbox, category_id=1, **extra):
    return {"id": id_, "image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}


def _cap(id_, image_id, caption):
    return {"id": id_, "image_id": image_id, "caption": caption}


def _turns(item, kind=None):
    return [(t["kind"], t["prompt"], t["target"]) for t in item["turns"] if kind in (None, t["kind"])]


def _detection(item):
    return next(t for t in item["turns"] if t["kind"] == "detection")


def _coords(box):
    return [box[k] for k in ("y_min", "x_min", "y_max", "x_max")]


# ---- hf_parquet text cells -------------------------------------------------------------------------


def _images(*values):
    return pa.array([{"bytes": solid(8, 8, (v, v, v)), "path": None} for v in values], IMAGE_STRUCT)


def test_null_caption_cell_is_no_turn_and_a_row_without_turns_is_quarantined_alone(tmp_path):
    """Two rows on image A (one caption null) and one row on image B (null): never the text "None"."""
    same = solid(8, 8, (10, 10, 10))
    images = pa.array(
        [{"bytes": same, "path": None}] * 2 + [{"bytes": solid(8, 8), "path": None}], IMAGE_STRUCT
    )
    good, bad = split(
        read_web(hf_dataset(tmp_path, {"image": images, "text": ["a dark square", None, None]}))
    )
    assert [_turns(i) for i in good] == [[("caption", "caption en", "a dark square")]]
    assert [(q.source_file, q.field) for q in bad] == [
        ("web/train.parquet#1", "text"),
        ("web/train.parquet#2", "text"),
    ]
    assert all("no caption, or question and answer, text" in q.reason for q in bad)


def test_a_list_of_captions_gives_one_caption_turn_each(tmp_path):
    text = pa.array([["a red cup", " a cup  on a table ", None], []], pa.list_(pa.string()))
    good, bad = split(read_web(hf_dataset(tmp_path, {"image": _images(1, 2), "text": text})))
    assert [t[2] for t in _turns(good[0])] == ["a red cup", "a cup on a table"]
    assert len(good) == 1 and bad[0].source_file == "web/train.parquet#1"  # an empty list: no caption


def test_a_list_of_vqa_answers_gives_the_most_common_one(tmp_path):
    structs = pa.list_(pa.struct([("answer", pa.string()), ("answer_id", pa.int64())]))
    columns = {
        "image": _images(1, 2),
        "q": ["how many cups?", "what colour is it?"],
        "a": pa.array([["2", "two", "2", "3"], ["Red", "blue", "red."]], pa.list_(pa.string())),
        "answers": pa.array(
            [
                [
                    {"answer": "yes", "answer_id": 1},
                    {"answer": "no", "answer_id": 2},
                    {"answer": "no", "answer_id": 3},
                ],
                None,
            ],
            structs,
        ),
    }
    good, _ = split(read_web(hf_dataset(tmp_path, columns, "{image: image, question: q, answer: a}")))
    assert [_turns(i) for i in good] == [
        [("vqa", "answer en how many cups?", "2")],
        [("vqa", "answer en what colour is it?", "Red")],  # "red." counts as "red": VQAv2's normalization
    ]
    (tmp_path / "web" / "train.parquet").unlink()
    good, bad = split(read_web(hf_dataset(tmp_path, columns, "{image: image, question: q, answer: answers}")))
    assert _turns(good[0]) == [("vqa", "answer en how many cups?", "no")]
    assert bad[0].source_file == "web/train.parquet#1"  # a null answer: the row gives no turn


def test_numbers_and_structs_in_a_text_column_are_refused_never_stringified(tmp_path):
    good, bad = split(read_web(hf_dataset(tmp_path, {"image": _images(1, 2), "text": pa.array([5, 7])})))
    assert not good and [q.source_file for q in bad] == ["web/train.parquet#0", "web/train.parquet#1"]
    assert "web/train.parquet#0 caption is int 5, not text" in bad[0].reason
    (tmp_path / "web" / "train.parquet").unlink()
    text = pa.array([{"en": "a cup"}, {"en": "a dog"}], pa.struct([("en", pa.string())]))
    _, bad = split(read_web(hf_dataset(tmp_path, {"image": _images(1, 2), "text": text})))
    assert "caption is dict {'en': 'a cup'}, not text" in bad[0].reason and bad[0].field == "text"


def test_caption_question_and_answer_columns_all_give_turns(tmp_path):
    columns = {"image": _images(1), "c": ["a grey square"], "q": ["what shape?"], "a": ["square"]}
    good, _ = split(
        read_web(hf_dataset(tmp_path, columns, "{image: image, caption: c, question: q, answer: a}"))
    )
    assert _turns(good[0]) == [
        ("caption", "caption en", "a grey square"),
        ("vqa", "answer en what shape?", "square"),
    ]


# ---- hf_parquet image cells ------------------------------------------------------------------------


def test_path_only_images_are_read_next_to_the_parquet_file(tmp_path):
    """HF `Image` structs with null bytes and a path, and a plain string column: files relative to the
    parquet file's folder. The 16-bit PNG at half level is stored at half level, not white."""
    (tmp_path / "web" / "images").mkdir(parents=True)
    (tmp_path / "web" / "images" / "grey16.png").write_bytes(
        encode(Image.fromarray(np.full((32, 32), 32896, np.uint16)))
    )
    (tmp_path / "web" / "images" / "blue.png").write_bytes(solid(32, 32, (0, 0, 255)))
    cells = [
        {"bytes": None, "path": "images/grey16.png"},
        {"bytes": b"", "path": "images/blue.png"},
        {"bytes": None, "path": "images/gone.png"},
        {"bytes": None, "path": "/etc/hostname"},
        {"bytes": None, "path": "../secret.png"},
    ]
    columns = {"image": pa.array(cells, IMAGE_STRUCT), "text": ["grey", "blue", "x", "y", "z"]}
    good, bad = split(read_web(hf_dataset(tmp_path, columns)))
    assert [(i["image_id"], i["source_file"]) for i in good] == [
        ("web/images/grey16.png", "web/train.parquet#0"),
        ("web/images/blue.png", "web/train.parquet#1"),
    ]
    assert np.abs(decode_jpeg(good[0]["image"])[112, 112].astype(int) - 128).max() <= 2
    assert np.abs(decode_jpeg(good[1]["image"])[112, 112].astype(int) - (0, 0, 255)).max() <= 3
    assert "image file 'images/gone.png' (next to the parquet file) is missing" in bad[0].reason
    assert all("leaves the parquet file's folder" in q.reason for q in bad[1:])
    (tmp_path / "web" / "train.parquet").unlink()
    columns = {"image": ["images/blue.png"], "text": ["blue"]}
    good, _ = split(read_web(hf_dataset(tmp_path, columns)))
    assert (
        _turns(good[0]) == [("caption", "caption en", "blue")]
        and good[0]["image_id"] == "web/images/blue.png"
    )


def test_same_named_images_of_two_folders_stay_two_items(tmp_path):
    """`a/img.png` and `b/img.png`, each named `img.png` by its own parquet: two images, each with its
    own caption (keyed by the path relative to the sources file, not as the cell spells it)."""
    for folder, colour in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        (tmp_path / "web" / folder).mkdir(parents=True)
        (tmp_path / "web" / folder / "img.png").write_bytes(solid(32, 32, colour))
        table = pa.table(
            {"image": pa.array([{"bytes": None, "path": "img.png"}], IMAGE_STRUCT), "text": [folder]}
        )
        pq.write_table(table, tmp_path / "web" / folder / "train.parquet")
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        "datasets:\n  - {name: web, kind: WD, format: hf_parquet, path: 'web/*/train.parquet', "
        "columns: {image: image, caption: text}}\n"
    )
    good, bad = split(read_web(sources))
    assert not bad
    assert [(i["image_id"], _turns(i)[0][2]) for i in good] == [
        ("web/a/img.png", "a"),
        ("web/b/img.png", "b"),
    ]
    red, blue = (decode_jpeg(i["image"])[112, 112].astype(int) for i in good)
    assert red[0] > 200 > red[2] and blue[2] > 200 > blue[0]


def test_rows_without_an_image_are_quarantined_each_on_its_own(tmp_path):
    """Null cells and empty bytes used to merge into one item (the hash of no bytes)."""
    cells = [
        None,
        {"bytes": None, "path": None},
        {"bytes": b"", "path": ""},
        {"bytes": solid(8, 8), "path": None},
    ]
    columns = {"image": pa.array(cells, IMAGE_STRUCT), "text": ["a", "b", "c", "d"]}
    good, bad = split(read_web(hf_dataset(tmp_path, columns)))
    assert [_turns(i) for i in good] == [[("caption", "caption en", "d")]]
    assert [q.source_file for q in bad] == [f"web/train.parquet#{k}" for k in range(3)]
    assert all("no image bytes" in q.reason and q.field == "image" for q in bad)


# ---- images of any mode ----------------------------------------------------------------------------

_PALETTE = [255, 0, 0, 0, 0, 255] + [0] * 762


def _palette(transparent: bool) -> bytes:
    im = Image.new("P", (2, 1))
    im.putpalette(_PALETTE)
    im.putpixel((1, 0), 1)
    return encode(im, transparency=1) if transparent else encode(im)


DECODES = {  # name: (file bytes, expected first row of pixels)
    "png_16bit_grey": (
        encode(Image.fromarray(np.array([[0, 257, 32896, 65535]], np.uint16))),
        [[0, 0, 0], [1, 1, 1], [128, 128, 128], [255, 255, 255]],
    ),
    "tiff_16bit_grey": (
        encode(Image.fromarray(np.array([[0, 40000]], np.uint16)), "TIFF"),
        [[0, 0, 0], [156, 156, 156]],
    ),
    "png_48bit_rgb": (
        png_rgb16(np.array([[[65535, 0, 32896], [1000, 20000, 60000]]], np.uint16)),
        [[255, 0, 128], [3, 78, 234]],  # each sample's high byte
    ),
    "grey_l": (
        encode(Image.fromarray(np.array([[0, 77, 255]], np.uint8))),
        [[0, 0, 0], [77, 77, 77], [255] * 3],
    ),
    "one_bit": (encode(Image.fromarray(np.array([[True, False]]))), [[255, 255, 255], [0, 0, 0]]),
    "palette": (_palette(False), [[255, 0, 0], [0, 0, 255]]),
    "palette_transparent_on_white": (_palette(True), [[255, 0, 0], [255, 255, 255]]),
    "rgba_on_white": (
        encode(
            Image.fromarray(np.array([[[255, 0, 0, 255], [0, 0, 0, 0], [0, 0, 255, 128]]], np.uint8), "RGBA")
        ),
        [[255, 0, 0], [255, 255, 255], [127, 127, 255]],
    ),
    "la_on_white": (
        encode(Image.fromarray(np.array([[[10, 255], [10, 0], [0, 51]]], np.uint8), "LA")),
        [[10, 10, 10], [255, 255, 255], [204, 204, 204]],
    ),
    "rgb_with_transparent_colour": (
        encode(Image.fromarray(np.array([[[0, 0, 0], [9, 9, 9]]], np.uint8)), transparency=(0, 0, 0)),
        [[255, 255, 255], [9, 9, 9]],
    ),
    "float_tiff_0_to_1": (
        encode(Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)), "TIFF"),
        [[0, 0, 0], [128, 128, 128], [255, 255, 255]],
    ),
}


@pytest.mark.parametrize("name", sorted(DECODES))
def test_every_image_mode_decodes_to_the_right_rgb(name):
    data, row = DECODES[name]
    rgb = decode_jpeg(data)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, len(row), 3)
    assert rgb[0].tolist() == row


def test_cmyk_jpeg_and_big_endian_16bit_decode_to_their_colours():
    cmyk = encode(Image.new("RGB", (16, 16), (200, 50, 30)).convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(cmyk)).mode == "CMYK"
    assert np.abs(decode_jpeg(cmyk)[8, 8].astype(int) - (200, 50, 30)).max() <= 3
    big = Image.frombytes("I;16B", (3, 1), np.array([0, 32896, 65535], ">u2").tobytes())
    assert to_rgb(big)[0, :, 0].tolist() == [0, 128, 255]


def test_image_values_outside_their_mode_range_are_refused_not_saturated():
    with pytest.raises(ImageDecodeError, match=r"mode F image with values in \[0, 2\], outside 0\.\.1"):
        decode_jpeg(encode(Image.fromarray(np.array([[0.0, 2.0]], np.float32)), "TIFF"))
    with pytest.raises(ImageDecodeError, match=r"mode I image with values in \[-5, 7\], outside 0\.\.65535"):
        to_rgb(Image.fromarray(np.array([[-5, 7]], np.int32)))
    with pytest.raises(ImageDecodeError, match="image mode LAB has no rule to become RGB"):
        to_rgb(Image.new("LAB", (2, 2)))
    with pytest.raises(ImageDecodeError, match="above the cap of 50 MP"):  # from a 16-bit PNG's header
        decode_jpeg(png_rgb16(np.zeros((1, 1, 3), np.uint16), claim=(10000, 6000)))


# ---- COCO boxes ------------------------------------------------------------------------------------


def _coco_boxes(tmp_path, boxes, size=(224, 224), file_size=(224, 224), captions=()):
    return read_web(
        coco_dataset(
            tmp_path,
            {"a.png": solid(*file_size)},
            [_image(1, "a.png", size)],
            [_cap(k, 1, c) for k, c in enumerate(captions)] if captions else None,
            {"annotations": boxes, "categories": CATEGORIES},
        )
    )


def test_boxes_of_a_resized_mirror_are_scaled_to_the_file(tmp_path):
    """`images[]` says 448x448 (the original), the file is 224x224: the same box, half the pixels."""
    good, _ = split(_coco_boxes(tmp_path, [_box(1, 1, [2 * v for v in BOX])], size=(448, 448)))
    det = _detection(good[0])
    assert det["target"] == BOX_TARGET and det["prompt"] == "detect cup"
    assert _coords(det["boxes"][0]) == pytest.approx([0.2, 0.1, 0.45, 0.6])
    assert good[0]["counts"]["boxes_rescaled"] == 1


def test_a_declared_size_of_another_aspect_ratio_quarantines_naming_both(tmp_path):
    _, bad = split(_coco_boxes(tmp_path, [_box(1, 1, BOX)], size=(448, 448), file_size=(224, 112)))
    assert "the annotations give the image as 448x448, the file decodes to 224x112" in bad[0].reason


def test_boxes_just_past_the_edge_are_clipped_and_zero_sized_ones_dropped(tmp_path):
    """Tolerance: the larger of 4 px and 2% of the side (4.48 px on 224)."""
    boxes = [
        _box(1, 1, BOX),
        _box(2, 1, [-3.0, 44.8, 25.4, 56.0]),  # 3 px past the left edge: x 0..22.4
        _box(3, 1, [200.0, 44.8, 28.0, 56.0]),  # 4 px past the right edge: x 200..224
        _box(4, 1, [100.0, 100.0, 0.0, 20.0], category_id=2),  # zero width: dropped
        _box(5, 1, [226.0, 10.0, 2.0, 20.0], category_id=2),  # past the edge, nothing left after clipping
    ]
    good, _ = split(_coco_boxes(tmp_path, boxes))
    det = _detection(good[0])
    assert det["prompt"] == "detect cup"  # "person" had only dropped boxes
    assert [v for b in det["boxes"] for v in _coords(b)] == pytest.approx(
        [0.2, 0.1, 0.45, 0.6, 0.2, 0.0, 0.45, 0.1, 0.2, 200 / 224, 0.45, 1.0]
    )
    assert (
        det["target"]
        == f"{BOX_TARGET} ; <loc0204><loc0000><loc0460><loc0102> cup ; <loc0204><loc0914><loc0460><loc1023> cup"
    )
    assert good[0]["counts"] == {
        "crowd_regions": 0,
        "boxes_clipped": 2,
        "boxes_dropped": 2,
        "boxes_rescaled": 0,
        "texts_empty": 0,
    }


def test_a_box_far_outside_quarantines_and_all_dropped_boxes_keep_the_captions(tmp_path):
    _, bad = split(_coco_boxes(tmp_path, [_box(1, 1, [10.0, 10.0, 230.0, 20.0])]))
    assert (
        "box [10.0, 10.0, 230.0, 20.0] of 'cup' lies outside the 224x224 image by more than" in bad[0].reason
    )
    (tmp_path / "coco").rename(tmp_path / "old")
    good, _ = split(_coco_boxes(tmp_path, [_box(1, 1, [50.0, 50.0, 0.0, 9.0])], captions=["a blue square"]))
    assert _turns(good[0]) == [("caption", "caption en", "a blue square")]
    assert good[0]["counts"]["boxes_dropped"] == 1


def test_crowd_regions_are_left_out_of_the_targets_and_counted(tmp_path):
    boxes = [
        _box(
            1,
            1,
            [0.0, 0.0, 224.0, 224.0],
            category_id=2,
            iscrowd=1,
            segmentation={"counts": "x", "size": [224, 224]},
        ),
        _box(2, 1, BOX, iscrowd=0),
        _box(3, 1, [5.0, 5.0, 10.0, 10.0], iscrowd=1),
    ]
    good, _ = split(_coco_boxes(tmp_path, boxes))
    assert _turns(good[0]) == [("detection", "detect cup", BOX_TARGET)]
    assert good[0]["counts"]["crowd_regions"] == 2


def test_an_unknown_category_id_quarantines_naming_it(tmp_path):
    _, bad = split(_coco_boxes(tmp_path, [_box(1, 1, BOX), _box(2, 1, BOX, category_id=91)]))
    assert "annotation 2: category_id 91 is not in the file's `categories` (ids [1, 2])" in bad[0].reason
    assert bad[0].field == "turns"


# ---- COCO texts and ids ----------------------------------------------------------------------------


def test_vqa_answer_without_multiple_choice_answer_is_the_most_common_human_answer(tmp_path):
    questions = [
        {"question_id": 11, "image_id": 1, "question": "how many cups?"},
        {"question_id": 12, "image_id": 1, "question": "is it blue?"},
        {"question_id": 13, "image_id": 1, "question": None},
    ]
    answers = [
        {"question_id": 11, "answers": [{"answer": "two"}, {"answer": "2"}, {"answer": "Two"}]},
        {"question_id": 12, "multiple_choice_answer": "", "answers": [{"answer": "yes"}]},
        {"question_id": 13, "multiple_choice_answer": "no"},
    ]
    good, _ = split(
        read_web(
            coco_dataset(
                tmp_path, {"a.png": solid(8, 8)}, [_image(1, "a.png", (8, 8))], [], vqa=(questions, answers)
            )
        )
    )
    assert _turns(good[0]) == [
        ("vqa", "answer en how many cups?", "two"),
        ("vqa", "answer en is it blue?", "yes"),
    ]
    assert good[0]["counts"]["texts_empty"] == 1  # the null question gives no turn


def test_ids_spelled_as_int_and_as_string_merge_into_one_item(tmp_path):
    """captions say 9, VQA says "000000000009", the boxes' `images` say "9"; "pic" stays a string id."""
    images = [_image(9, "nine.png"), _image("pic", "pic.png")]
    files = {"nine.png": solid(224, 224), "pic.png": solid(224, 224)}
    sources = coco_dataset(
        tmp_path,
        files,
        images,
        [_cap(1, 9, "image nine"), _cap(2, "pic", "a picture")],
        {"annotations": [_box(1, "9", BOX)], "categories": CATEGORIES},
        (
            [{"question_id": 5, "image_id": "000000000009", "question": "which?"}],
            [{"question_id": "5", "multiple_choice_answer": "nine"}],
        ),
    )
    (tmp_path / "coco" / "instances.json").write_text(
        (tmp_path / "coco" / "instances.json").read_text().replace('"id": 9,', '"id": "9",')
    )
    good, bad = split(read_web(sources))
    assert not bad and [(i["item"], i["image_id"]) for i in good] == [(0, "9"), (1, "pic")]
    assert _turns(good[0]) == [
        ("caption", "caption en", "image nine"),
        ("detection", "detect cup", BOX_TARGET),
        ("vqa", "answer en which?", "nine"),
    ]


def test_coco_caption_null_gives_no_turn_and_a_number_is_refused(tmp_path):
    images = [_image(1, "a.png", (8, 8)), _image(2, "b.png", (8, 8))]
    captions = [_cap(1, 1, None), _cap(2, 1, "a blue square"), _cap(3, 2, 42)]
    good, bad = split(
        read_web(coco_dataset(tmp_path, {"a.png": solid(8, 8), "b.png": solid(8, 8)}, images, captions))
    )
    assert (
        _turns(good[0]) == [("caption", "caption en", "a blue square")]
        and good[0]["counts"]["texts_empty"] == 1
    )
    assert "coco/captions.json annotation 3: caption is int 42, not text" in bad[0].reason


# ---- the `columns:` mapping ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ("{image: image, question: q}", r"maps question \('q'\) but not answer: a VQA turn needs both"),
        ("{image: image, answer: a}", r"maps answer \('a'\) but not question"),
        ("{image: image}", "maps no text column"),
        ("{image: image, captoin: text}", r"unknown `columns:` keys \['captoin'\] \(did you mean 'caption'"),
    ],
)
def test_a_columns_mapping_that_cannot_give_turns_is_refused_at_load(tmp_path, mapping, message):
    (tmp_path / "sources.yaml").write_text(
        f"datasets:\n  - {{name: web, kind: WD, format: hf_parquet, path: web, columns: {mapping}}}\n"
    )
    with pytest.raises(ConfigError, match=message):
        load_sources(tmp_path / "sources.yaml")
