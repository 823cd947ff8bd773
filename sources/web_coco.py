"""COCO-style web datasets: an images folder and annotation files (COCO captions, COCO boxes, VQAv2)
merged by image id into one ItemRef per image.

- Ids are compared normalized, so files that spell them differently still merge: an int, or a string of
  decimal digits ("9", "000000000009"), is that int; any other string stays a string; anything else
  (null, a bool, a list) refuses its annotation.
- Texts go through sources/fields.py: a null or empty caption, question or answer gives no turn (counted
  as `texts_empty`); a value that is not text refuses its image's item.
- A VQAv2 answer without `multiple_choice_answer` is the most common of its `answers[].answer`.
- `iscrowd: 1` regions are left out of the detection targets (counted as `crowd_regions`); a box of an
  unknown `category_id` refuses its item.
- Each detection turn keeps the `width`/`height` its own file gives the image, so the reader can scale
  its boxes to a resized file (sources/web_boxes.py).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from vlamix.config import ConfigError
from vlamix.sources.config import SourcesFile, WebAnnotations, WebSource
from vlamix.sources.fields import FieldError, is_null, scalar_text, text_list
from vlamix.sources.location import glob_files, is_file, is_remote, locate, read_bytes
from vlamix.sources.web_items import CAPTION_PROMPT, ItemRef, RawTurn, answer_text

__all__ = ["ImageFolder", "ImageId", "coco_items", "image_id_of"]

ImageId = int | str
_INT = re.compile(r"-?[0-9]+")


def _short(value: object, limit: int = 60) -> str:
    return repr(value)[:limit]


def image_id_of(value: object, what: str) -> ImageId:
    """An id as the files mean it: ints and decimal strings are the same id; other strings stay strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():  # 9.0: a JSON writer that keeps numbers as floats
        return int(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        return int(text) if _INT.fullmatch(text) else text
    raise FieldError(f"{what} {_short(value)} is not an id (an int or a non-empty string)")


def _order(value: ImageId) -> tuple[int, int, str]:
    """Ints in numeric order, then strings: ids of both kinds sort together."""
    return (0, value, "") if isinstance(value, int) else (1, 0, value)


def _load_json(root: Path, rel: str) -> dict:
    """An annotation file. Bytes that are not UTF-8 are kept as lone surrogates (`surrogateescape`): one
    bad caption quarantines its item, not the whole file."""
    path = locate(root, rel)
    try:
        data = json.loads(read_bytes(path).decode("utf-8", "surrogateescape"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read annotations: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _entries(data: dict, key: str, rel: str, required: bool = True) -> list[dict]:
    value = data.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{rel}: `{key}` must be a list of objects (got {_short(value)})")
    return value


def _by_id(entries: list[dict]) -> list[dict]:
    """Annotations ordered by their `id` (ints, then strings), file order where ids are absent or odd."""

    def key(pair: tuple[int, dict]) -> tuple:
        try:
            return (0, *_order(image_id_of(pair[1].get("id"), "id")), pair[0])
        except FieldError:
            return (1, 0, 0, "", pair[0])

    return [a for _, a in sorted(enumerate(entries), key=key)]


def _size(entry: dict) -> tuple[float, float] | None:
    w, h = entry.get("width"), entry.get("height")
    if is_null(w) and is_null(h):
        return None
    for v in (w, h):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise FieldError(f"width {_short(w)} and height {_short(h)} must both be positive numbers")
    return (float(w), float(h))


@dataclass
class _Listing:
    """What the annotation files say, by normalized image id."""

    files: dict[ImageId, str] = field(default_factory=dict)  # image id -> file name
    sizes: dict[tuple[ImageId, str], tuple[float, float]] = field(default_factory=dict)  # (id, file)
    turns: dict[ImageId, list[RawTurn]] = field(default_factory=lambda: defaultdict(list))
    problems: dict[ImageId, tuple[str, str]] = field(default_factory=dict)  # first problem, its field
    counts: dict[ImageId, Counter] = field(default_factory=lambda: defaultdict(Counter))
    orphans: list[tuple[str, str]] = field(default_factory=list)  # (annotation file, reason): no image id

    def problem(self, image_id: ImageId, reason: str, what: str = "text") -> None:
        self.problems.setdefault(image_id, (reason, what))

    def image_id(self, entry: dict, rel: str, what: str) -> ImageId | None:
        try:
            return image_id_of(entry.get("image_id"), f"{what}: image_id")
        except FieldError as e:
            self.orphans.append((rel, f"{rel} {e}: fix or drop that annotation"))
            return None

    def images(self, data: dict, rel: str) -> None:
        for k, im in enumerate(_entries(data, "images", rel, required=False)):
            where = f"{rel} images[{k}]"
            try:
                image_id = image_id_of(im.get("id"), f"{where} id")
            except FieldError as e:
                self.orphans.append((rel, f"{e}: fix or drop that image entry"))
                continue
            try:
                name = scalar_text(im.get("file_name"), f"{where} file_name")
                size = _size(im)
            except FieldError as e:
                self.problem(image_id, f"{where}: {e}", "image")
                continue
            if size is not None:
                self.sizes[(image_id, rel)] = size
            parts = PurePosixPath(name or "").parts
            if not name or PurePosixPath(name).is_absolute() or ".." in parts:
                self.problem(
                    image_id, f"{where}: file_name {name!r} is not a file inside the images folder", "image"
                )
            elif self.files.setdefault(image_id, name) != name:
                self.problem(
                    image_id,
                    f"image id {image_id!r} is {self.files[image_id]!r} in one annotation file and {name!r} "
                    f"in {rel}: make the files agree",
                    "image",
                )

    def captions(self, data: dict, rel: str) -> None:
        for a in _by_id(_entries(data, "annotations", rel)):
            what = f"{rel} annotation {a.get('id')!r}"
            image_id = self.image_id(a, rel, what)
            if image_id is None:
                continue
            try:
                texts = text_list(a.get("caption"), f"{what}: caption")
            except FieldError as e:
                self.problem(image_id, str(e))
                continue
            if not texts:
                self.counts[image_id]["texts_empty"] += 1
            self.turns[image_id] += [RawTurn("caption", CAPTION_PROMPT, t) for t in texts]

    def detection(self, data: dict, rel: str) -> None:
        names: dict[ImageId, str] = {}
        for k, c in enumerate(_entries(data, "categories", rel)):
            try:
                name = scalar_text(c.get("name"), f"{rel} categories[{k}] name")
                names[image_id_of(c.get("id"), f"{rel} categories[{k}] id")] = name or ""
            except FieldError as e:
                raise ConfigError(f"{e}: fix the `categories` of {rel}") from None
        boxes: dict[ImageId, list] = defaultdict(list)
        for a in _by_id(_entries(data, "annotations", rel)):
            what = f"{rel} annotation {a.get('id')!r}"
            image_id = self.image_id(a, rel, what)
            if image_id is None:
                continue
            crowd, bbox, category = a.get("iscrowd", 0), a.get("bbox"), a.get("category_id")
            if crowd is True or crowd == 1:
                self.counts[image_id]["crowd_regions"] += 1
                continue
            if not (crowd is None or crowd is False or crowd == 0):
                self.problem(image_id, f"{what}: iscrowd {_short(crowd)} is not 0 or 1", "turns")
            elif not _is_bbox(bbox):
                self.problem(
                    image_id,
                    f"{what}: bbox {_short(bbox)} is not [x, y, width, height], four numbers",
                    "turns",
                )
            else:
                try:
                    label = names.get(image_id_of(category, "category_id"))
                except FieldError:
                    label = None
                if not label:
                    known = sorted(names, key=_order)
                    self.problem(
                        image_id,
                        f"{what}: category_id {_short(category)} is not in the file's `categories` (ids "
                        f"{known[:12]}{' ...' if len(known) > 12 else ''})",
                        "turns",
                    )
                else:
                    boxes[image_id].append((label, *bbox))
        for image_id, bs in boxes.items():
            labels = " ; ".join(dict.fromkeys(b[0] for b in bs))
            size = self.sizes.get((image_id, rel))
            self.turns[image_id].append(RawTurn("detection", f"detect {labels}", "", tuple(bs), size))

    def vqa(self, root: Path, ann: WebAnnotations) -> None:
        rel_q, rel_a = str(ann.questions), str(ann.answers)
        answers: dict[ImageId, dict] = {}
        for a in _entries(_load_json(root, rel_a), "annotations", rel_a):
            try:
                answers[image_id_of(a.get("question_id"), f"{rel_a} annotation: question_id")] = a
            except FieldError as e:
                self.orphans.append((rel_a, f"{e}: fix or drop that answer"))
        questions = _entries(_load_json(root, rel_q), "questions", rel_q)
        for q in sorted(questions, key=lambda q: _order(_question_id(q))):
            what = f"{rel_q} question {q.get('question_id')!r}"
            image_id = self.image_id(q, rel_q, what)
            if image_id is None:
                continue
            a = answers.get(_question_id(q))
            if a is None:  # a question without answers (a test split): nothing to train on
                self.counts[image_id]["texts_empty"] += 1
                continue
            try:
                question = scalar_text(q.get("question"), f"{what}: question")
                answer = scalar_text(
                    a.get("multiple_choice_answer"), f"{rel_a} answer: multiple_choice_answer"
                )
                if answer is None:
                    answer = answer_text(a.get("answers"), f"{rel_a} answer to {what}: answers")
            except FieldError as e:
                self.problem(image_id, str(e))
                continue
            if question is None or answer is None:
                self.counts[image_id]["texts_empty"] += 1
                continue
            self.turns[image_id].append(RawTurn("vqa", f"answer en {question}", answer))


def _question_id(q: dict) -> ImageId:
    try:
        return image_id_of(q.get("question_id"), "question_id")
    except FieldError:
        return ""  # sorts last; no answer is keyed by it


def _is_bbox(value: object) -> bool:
    """[x, y, w, h], four JSON numbers (finiteness and bounds are checked against the image later)."""
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def _item_error(
    src: WebSource, images: ImageFolder, listing: _Listing, image_id: ImageId
) -> tuple[str | None, str]:
    name = listing.files.get(image_id)
    if image_id in listing.problems:
        reason, what = listing.problems[image_id]
        return f"{reason}: fix or drop that annotation", what
    if name is None:
        return f"image id {image_id!r} has annotations but no entry in any COCO `images` list", "image"
    if not images.has(name):
        return f"image file {src.images}/{name} is missing", "image"
    if not listing.turns.get(image_id):
        crowd = listing.counts[image_id]["crowd_regions"]
        left_out = f" ({crowd} crowd regions left out)" if crowd else ""
        return f"image {name} has no caption, question or box{left_out}", "turns"
    return None, "image"


class ImageFolder:
    """Which image files the `images:` folder holds: asked per file on a local disk, listed once (names
    only) at a URL, where a request per image would dominate the listing."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._names: set[str] | None = None
        if is_remote(folder):
            prefix = str(folder).rstrip("/") + "/"
            self._names = {str(p)[len(prefix) :] for p in glob_files(folder, "**/*")}

    def has(self, name: str) -> bool:
        return is_file(self.folder / name) if self._names is None else name in self._names

    def path(self, name: str) -> str:
        return str(self.folder / name)


def coco_items(sources: SourcesFile, src: WebSource) -> list[ItemRef]:
    root = sources.root
    images = ImageFolder(locate(root, str(src.images)))
    listing = _Listing()
    for ann in src.annotations:
        if ann.format == "vqav2":
            listing.vqa(root, ann)
            continue
        rel = str(ann.path)
        data = _load_json(root, rel)
        listing.images(data, rel)
        (listing.captions if ann.format == "coco_captions" else listing.detection)(data, rel)
    ids = set(listing.turns) | set(listing.files) | set(listing.problems) | set(listing.counts)
    refs = []
    for k, image_id in enumerate(sorted(ids, key=_order)):
        name = listing.files.get(image_id)
        error, what = _item_error(src, images, listing, image_id)
        refs.append(
            ItemRef(
                k,
                str(image_id),
                f"{src.images}/{name}" if name else f"{src.images}/?",
                images.path(name) if name else "",
                -1,
                tuple(listing.turns.get(image_id, ())),
                error,
                what,
                tuple(sorted((c, n) for c, n in listing.counts[image_id].items() if n)),
            )
        )
    return refs + [
        ItemRef(len(refs) + k, "?", rel, str(locate(root, rel)), -1, (), reason, "image_id")
        for k, (rel, reason) in enumerate(listing.orphans)
    ]
