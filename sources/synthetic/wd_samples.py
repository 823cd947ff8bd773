"""The web (WD) samples: real photographs that ship inside the scikit-image wheel, with captions, VQAv2
questions and COCO boxes written for them here, a Hugging Face-style parquet of captions, LLaVA-style
conversations (`generate_llava`) and a parquet of pointing rows (`generate_pointing`).

Only images that the wheel itself contains are used (some `skimage.data` images download on first use);
the photographs' licences are listed in scikit-image's data README.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

__all__ = ["LLAVA_ITEMS", "PHOTOS", "POINTS", "generate_llava", "generate_pointing", "generate_wd"]

MAX_SIDE = 320
# file in skimage/data, COCO id, captions, (question, answer) pairs, boxes [label, x, y, w, h] in the original pixels
PHOTOS = (
    (
        "astronaut.png",
        101,
        [
            "a smiling astronaut in an orange flight suit in front of an american flag",
            "portrait of an astronaut beside a model of the space shuttle",
        ],
        [
            ("what color is the flight suit?", "orange"),
            ("what is in the top right corner?", "space shuttle model"),
        ],
        [["person", 20, 15, 345, 497], ["helmet", 275, 345, 237, 167], ["space shuttle", 355, 0, 115, 285]],
    ),
    (
        "chelsea.png",
        102,
        ["close up of a tabby cat's face with green eyes", "a brown striped cat looking at the camera"],
        [("what animal is this?", "cat"), ("what color are its eyes?", "green")],
        [["cat", 0, 0, 451, 300], ["eye", 135, 83, 70, 65], ["eye", 295, 108, 50, 57]],
    ),
    (
        "coffee.png",
        103,
        ["a cup of espresso on a red saucer with a spoon on a wooden table"],
        [("what is in the cup?", "coffee"), ("what is the table made of?", "wood")],
        [["cup", 170, 15, 245, 290], ["spoon", 322, 65, 103, 260], ["saucer", 75, 70, 405, 320]],
    ),
    (
        "rocket.jpg",
        104,
        ["a rocket standing on its launch pad between two towers at dusk"],
        [("is it day or night?", "dusk")],
        [["rocket", 305, 125, 33, 285], ["tower", 0, 0, 90, 427], ["tower", 555, 0, 85, 427]],
    ),
    (
        "motorcycle_left.png",
        105,
        ["a red motorcycle parked in a garage full of shelves"],
        [("what color is the motorcycle?", "red")],
        [["motorcycle", 95, 95, 590, 355]],
    ),
    (
        "hubble_deep_field.jpg",
        106,
        ["many distant galaxies in a deep space telescope image"],
        [("what is shown?", "galaxies")],
        [],
    ),
)
PARQUET_CAPTIONS = (  # a second, Hugging Face-style web set: two rows on one image merge into one item
    ("coffee.png", "an espresso cup seen from above"),
    ("coffee.png", "coffee with crema in a white cup"),
    ("chelsea.png", "a cat"),
    ("astronaut.png", "a woman in a space suit"),
)


def _photo(name: str) -> Image.Image:
    import skimage  # only the sample generator needs it (the dev extra)

    return Image.open(Path(skimage.__file__).parent / "data" / name).convert("RGB")


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85, optimize=True)
    return buf.getvalue()


def generate_wd(out: Path) -> list[Path]:
    """Write `out/web_coco/` (images + COCO captions, COCO boxes, VQAv2) and `out/web_parquet/`."""
    root = out / "web_coco"
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, captions, boxes, questions, answers = [], [], [], [], []
    categories: dict[str, int] = {}
    for name, image_id, caps, qas, bbs in PHOTOS:
        im = _photo(name)
        scale = min(1.0, MAX_SIDE / max(im.size))
        small = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BILINEAR)
        file_name = f"{image_id:012d}.jpg"
        (root / "images" / file_name).write_bytes(_jpeg(small))
        images.append({"id": image_id, "file_name": file_name, "width": small.width, "height": small.height})
        captions += [
            {"id": image_id * 10 + k, "image_id": image_id, "caption": c} for k, c in enumerate(caps)
        ]
        for k, (label, x, y, w, h) in enumerate(bbs):
            cat = categories.setdefault(label, len(categories) + 1)
            bbox = [round(v * scale, 2) for v in (x, y, w, h)]
            boxes.append(
                {
                    "id": image_id * 10 + k,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": bbox,
                    "area": round(bbox[2] * bbox[3], 2),
                    "iscrowd": 0,
                }
            )
        for k, (q, a) in enumerate(qas):
            qid = image_id * 10 + k
            questions.append({"image_id": image_id, "question": q, "question_id": qid})
            answers.append(
                {
                    "question_id": qid,
                    "image_id": image_id,
                    "multiple_choice_answer": a,
                    "answer_type": "other",
                    "question_type": "what",
                    "answers": [
                        {"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i in range(10)
                    ],
                }
            )
    cats = [{"id": i, "name": n, "supercategory": "object"} for n, i in categories.items()]
    files = {
        "captions.json": {"images": images, "annotations": captions},
        "instances.json": {"images": images, "annotations": boxes, "categories": cats},
        "vqa_questions.json": {"questions": questions},
        "vqa_answers.json": {"annotations": answers},
    }
    for name, data in files.items():
        (root / name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    rows = []
    for name, caption in PARQUET_CAPTIONS:
        im = _photo(name)
        scale = min(1.0, 256 / max(im.size))
        rows.append(
            {
                "image": {
                    "bytes": _jpeg(im.resize((round(im.width * scale), round(im.height * scale)))),
                    "path": name,
                },
                "text": caption,
            }
        )
    (out / "web_parquet").mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("text", pa.string())]
        ),
    )
    pq.write_table(table, out / "web_parquet" / "train-00000-of-00001.parquet")
    return [root, out / "web_parquet"]


SMALL_SIDE = 128  # the LLaVA and pointing samples: small copies of the same photographs
# LLaVA items: id, image, (human, gpt) pairs; two items on coffee.png merge into one item of two turns
LLAVA_ITEMS = (
    (
        "000000101",
        "astronaut.png",
        [
            ("<image>\nWhat is the person wearing?", "An orange flight suit with mission patches."),
            ("What is in the top right corner?", "A model of the space shuttle."),
        ],
    ),
    ("000000102", "chelsea.png", [("What animal is this?\n<image>", "A tabby cat.")]),
    (
        "000000103",
        "coffee.png",
        [("<image>\nDescribe the image briefly.", "A cup of espresso on a saucer, with a spoon beside it.")],
    ),
    ("000000203", "coffee.png", [("<image>\nWhat is the spoon resting on?", "On the saucer.")]),
)
# pointing rows: image, label, points (x, y) in the original photograph's pixels
POINTS = (
    ("chelsea.png", "eye", [(170.0, 115.5), (320.0, 136.5)]),
    ("coffee.png", "spoon", [(363.0, 281.0)]),
    ("rocket.jpg", "rocket", [(321.5, 267.5)]),
)


def _small(name: str) -> tuple[Image.Image, float]:
    """The photograph scaled to SMALL_SIDE on its long side, and the scale."""
    im = _photo(name)
    scale = SMALL_SIDE / max(im.size)
    return im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BILINEAR), scale


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def generate_llava(out: Path) -> list[Path]:
    """Write `out/web_llava/conversations.json` (LLaVA's list of {id, image, conversations}) and
    `out/web_llava/images/*.jpg`."""
    root = out / "web_llava"
    (root / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for ident, name, pairs in LLAVA_ITEMS:
        file_name = f"{_stem(name)}.jpg"
        (root / "images" / file_name).write_bytes(_jpeg(_small(name)[0]))
        conversations = []
        for human, gpt in pairs:
            conversations += [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]
        entries.append({"id": ident, "image": file_name, "conversations": conversations})
    (root / "conversations.json").write_text(json.dumps(entries, indent=1) + "\n")
    return [root]


def generate_pointing(out: Path) -> list[Path]:
    """Write `out/web_points/points.parquet`: image bytes, `points` (a list of {x, y} in the stored
    image's pixels) and `label`."""
    rows = []
    for name, label, points in POINTS:
        im, scale = _small(name)
        rows.append(
            {
                "image": {"bytes": _jpeg(im), "path": f"{_stem(name)}.jpg"},
                "points": [{"x": round(x * scale, 2), "y": round(y * scale, 2)} for x, y in points],
                "label": label,
            }
        )
    schema = pa.schema(
        [
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("points", pa.list_(pa.struct([("x", pa.float64()), ("y", pa.float64())]))),
            ("label", pa.string()),
        ]
    )
    (out / "web_points").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / "web_points" / "points.parquet")
    return [out / "web_points"]
