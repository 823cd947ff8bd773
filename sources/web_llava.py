"""LLaVA-style conversations (`format: llava_json`): a JSON list of `{"id", "image", "conversations":
[{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": ...}, ...]}` beside an images
folder, read into one ItemRef per image by written rules:

- Each human turn with the gpt turn after it is one `conversation` turn (prompt: the human text, target:
  the gpt text), in the conversation's order. Entries on the same image (by its path inside `images:`)
  merge into one item, as COCO merges by image id: their turns follow each other in file order, and
  items follow the order of their image's first entry.
- The `<image>` placeholder and the whitespace and newlines around it are taken out of the human text;
  other text is kept as written (LLaVA answers use newlines), its ends stripped.
- Refused, naming the JSON file and the entry's id and index: an entry without any gpt turn, a gpt turn
  first, a human turn followed by another human turn (or ending the conversation), a role other than
  human or gpt, a value that is not text, or a text empty once the placeholder is out, more than one
  `<image>` placeholder for the one image. One bad entry quarantines its image's item (every entry on
  it), as a bad COCO annotation does.
- An entry without `image` (LLaVA mixes in text-only items) is quarantined on its own: a web item is an
  image with its turns; keep text-only conversations out of the file given here. An `image` that is not
  one relative path inside the folder (a list, an absolute path, `..`) is refused likewise, and a missing
  image file quarantines its item as COCO does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from vlamix.config import ConfigError
from vlamix.sources.config import SourcesFile, WebSource
from vlamix.sources.fields import FieldError, is_null
from vlamix.sources.location import locate, read_bytes
from vlamix.sources.web_coco import ImageFolder
from vlamix.sources.web_items import ItemRef, RawTurn

__all__ = ["IMAGE_PLACEHOLDER", "llava_items"]

IMAGE_PLACEHOLDER = "<image>"
_PLACEHOLDER = re.compile(r"\s*<image>\s*")
_FIX = "fix or drop that item"


def _short(value: object, limit: int = 60) -> str:
    return repr(value)[:limit]


def _load(root: Path, rel: str) -> list:
    """The conversations file. Bytes that are not UTF-8 are kept as lone surrogates (`surrogateescape`):
    one bad text quarantines its item, not the whole file."""
    path = locate(root, rel)
    try:
        data = json.loads(read_bytes(path).decode("utf-8", "surrogateescape"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read conversations: {e}") from e
    if not isinstance(data, list):
        raise ConfigError(
            f"{path}: expected a JSON list of LLaVA items ({{id, image, conversations}}), got "
            f"{type(data).__name__}"
        )
    return data


def _human_text(value: str, at: str) -> str:
    text = _PLACEHOLDER.sub(" ", value).strip()
    if not text:
        raise FieldError(f"{at} (human) holds no text once the {IMAGE_PLACEHOLDER} placeholder is out")
    return text


def _turns(conversations: object) -> tuple[RawTurn, ...]:
    """One turn per human/gpt pair, in order. Raises FieldError naming the first broken message."""
    if not isinstance(conversations, list) or not conversations:
        raise FieldError(
            f"conversations is {_short(conversations)}, not a non-empty list of {{from, value}} messages"
        )
    if not any(isinstance(m, dict) and m.get("from") == "gpt" for m in conversations):
        raise FieldError("has no gpt turn: nothing to train on (a LLaVA item needs a human/gpt pair)")
    turns, question, placeholders = [], None, 0
    for j, message in enumerate(conversations):
        at = f"conversations[{j}]"
        if not isinstance(message, dict):
            raise FieldError(f"{at} is {type(message).__name__} {_short(message)}, not {{from, value}}")
        role, value = message.get("from"), message.get("value")
        if role not in ("human", "gpt"):
            raise FieldError(f"{at} is from {_short(role)}: LLaVA messages are from 'human' or 'gpt'")
        if not isinstance(value, str):
            raise FieldError(f"{at} ({role}) value is {type(value).__name__} {_short(value)}, not text")
        placeholders += value.count(IMAGE_PLACEHOLDER)
        if role == "human":
            if question is not None:
                raise FieldError(
                    f"{at} is a second human message in a row: conversations[{j - 1}] has no gpt answer"
                )
            question = _human_text(value, at)
            continue
        if question is None:
            raise FieldError(
                f"{at} is a gpt message with no human message before it"
                + (" (the conversation starts with gpt)" if j == 0 else "")
            )
        answer = value.strip()
        if not answer:
            raise FieldError(f"{at} (gpt) is empty")
        turns.append(RawTurn("conversation", question, answer))
        question = None
    if question is not None:
        raise FieldError(
            f"conversations[{len(conversations) - 1}] is a human message with no gpt answer after it"
        )
    if placeholders > 1:
        raise FieldError(
            f"holds {placeholders} {IMAGE_PLACEHOLDER} placeholders for its one image (multi-image items "
            "are not supported)"
        )
    return tuple(turns)


def _image_name(entry: dict) -> str:
    """The entry's image, a relative path inside the images folder. Raises FieldError."""
    name = entry.get("image")
    if is_null(name):
        raise FieldError(
            "has no `image`: a text-only LLaVA item; vlamix trains web items as an image with its turns, so "
            "keep text-only conversations out of this file"
        )
    if not isinstance(name, str) or not name.strip():
        raise FieldError(
            f"image is {type(name).__name__} {_short(name)}, not one file name (multi-image items are not "
            "supported)"
        )
    path = PurePosixPath(name.strip())
    if path.is_absolute() or ".." in path.parts:
        raise FieldError(f"image {name!r} is not a file inside the images folder")
    return str(path)


@dataclass
class _Unit:
    """One item to be: an image and the turns of its entries, or an entry without a usable image."""

    source_file: str
    image: str | None = None
    turns: list[RawTurn] = field(default_factory=list)
    error: str | None = None
    error_field: str = "image"

    def problem(self, reason: str, what: str) -> None:
        if self.error is None:
            self.error, self.error_field = reason, what


def _listing(entries: list, rel: str, images_rel: str) -> list[_Unit]:
    units: dict[str, _Unit] = {}  # image path, or "#k" for entry k without a usable image
    for k, entry in enumerate(entries):
        ident = entry.get("id") if isinstance(entry, dict) else None
        what = f"{rel} item {ident!r} (entry {k})" if not is_null(ident) else f"{rel} entry {k}"
        if not isinstance(entry, dict):
            units[f"#{k}"] = _Unit(
                rel,
                error=f"{what} is {type(entry).__name__} {_short(entry)}, not an object with `image` and "
                f"`conversations`: {_FIX}",
            )
            continue
        try:
            name = _image_name(entry)
        except FieldError as e:
            units[f"#{k}"] = _Unit(rel, error=f"{what} {e}: {_FIX}")
            continue
        unit = units.setdefault(name, _Unit(f"{images_rel}/{name}", name))
        try:
            unit.turns += _turns(entry.get("conversations"))
        except FieldError as e:
            unit.problem(f"{what} {e}: {_FIX}", "turns")
    return list(units.values())


def llava_items(sources: SourcesFile, src: WebSource) -> list[ItemRef]:
    rel, images_rel = str(src.path), str(src.images)
    images = ImageFolder(locate(sources.root, images_rel))
    refs = []
    for k, unit in enumerate(_listing(_load(sources.root, rel), rel, images_rel)):
        if unit.image is not None and unit.error is None and not images.has(unit.image):
            unit.problem(f"image file {images_rel}/{unit.image} is missing", "image")
        refs.append(
            ItemRef(
                k,
                unit.image or "?",
                unit.source_file,
                images.path(unit.image) if unit.image else "",
                -1,
                tuple(unit.turns),
                unit.error,
                unit.error_field,
            )
        )
    return refs
