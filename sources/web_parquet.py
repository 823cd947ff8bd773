"""Hugging Face-style web parquet: an image column and text columns, rows of one image merged into one
ItemRef. Every cell is read by a written rule:

- The image cell: an `Image` struct ({bytes, path}) or raw bytes; where the bytes are null or empty, its
  `path` (or a plain string column) names a file relative to the parquet file's folder (absolute paths
  and `..` are refused: a dataset names files inside itself). Rows of equal bytes, or of the same file,
  merge. A row without an image, or whose file is missing, is quarantined on its own.
- Text cells go through sources/fields.py: a caption cell holding a list gives one caption turn per
  text; an answer cell holding a list (of texts, or of VQAv2 `{answer, ...}` structs) gives their VQAv2
  answer; a null or empty cell gives no turn of its kind (counted as `texts_empty`); numbers, structs
  and other non-text values refuse the row. A row that gives no turn at all is quarantined on its own.
- A `points` cell with its `label` or `question` cell gives one pointing turn (sources/web_points.py:
  what a point is, what is refused).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from vlamix.config import ConfigError
from vlamix.sources.config import SourcesFile, WebSource, resolve_files
from vlamix.sources.fields import FieldError, is_null, text_list
from vlamix.sources.frames import one_line, parquet_size_problem
from vlamix.sources.location import Unreachable, display, is_file, readable
from vlamix.sources.web_items import CAPTION_PROMPT, ItemRef, RawTurn, answer_text, undecoded_text
from vlamix.sources.web_points import PointError, point_list, pointing_prompt

__all__ = ["image_cell_bytes", "parquet_items"]


def _as_binary(t: pa.DataType) -> pa.DataType:
    """`t` with every string made binary, so that a cell of invalid UTF-8 reads without raising."""
    if pa.types.is_string(t):
        return pa.binary()
    if pa.types.is_large_string(t):
        return pa.large_binary()
    if pa.types.is_list(t):
        return pa.list_(_as_binary(t.value_type))
    if pa.types.is_large_list(t):
        return pa.large_list(_as_binary(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _as_binary(f.type)) for f in t])
    return t


def _decoded(value: object) -> object:
    """Bytes as text, bytes that are not UTF-8 kept as lone surrogates (refused later, naming the byte)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    if isinstance(value, dict):
        return {k: _decoded(v) for k, v in value.items()}
    return value


def _text_cells(table: pa.Table, name: str) -> list[object]:
    column = table.column(name)
    return [_decoded(v) for v in column.cast(_as_binary(column.type)).to_pylist()]


def _read_listing_table(path: Path) -> pa.Table | str:
    """The whole parquet file, or why it cannot be read (the file becomes one quarantined item)."""
    try:
        with readable(path) as where:
            pf = pq.ParquetFile(where)
            return parquet_size_problem(pf.metadata) or pf.read()
    except Unreachable as e:
        return one_line(e)
    except (pa.ArrowException, OSError) as e:
        return (
            f"does not read as parquet: {one_line(e)} (truncated or corrupted? re-download or re-export it)"
        )


def image_cell_bytes(cell: object) -> bytes | None:
    """The bytes an image cell holds (an `Image` struct's `bytes`, or raw bytes), None where it holds none."""
    data = cell.get("bytes") if isinstance(cell, dict) else cell
    return bytes(data) if isinstance(data, bytes | bytearray) and data else None


@dataclass(frozen=True)
class _Image:
    key: str  # rows with the same key show the same image
    path: str = ""  # the image file, for a path-only cell ("" : the bytes are in the parquet row)
    error: str | None = None


def _image(cell: object, folder: Path, where: str, folder_rel: PurePosixPath) -> _Image:
    """`folder_rel`: the parquet file's folder relative to the sources file, so that path-only cells of
    two folders that name the same file (`img.png`) stay two images."""
    data = image_cell_bytes(cell)
    if data is not None:
        return _Image("bytes:" + hashlib.blake2b(data, digest_size=16).hexdigest())
    name = cell.get("path") if isinstance(cell, dict) else cell
    if is_null(cell) or (isinstance(cell, dict) and is_null(name)) or name in ("", b""):
        return _Image(where, error=f"{where}: no image bytes (a null image cell, or empty bytes and no path)")
    if not isinstance(name, str):
        return _Image(
            where,
            error=f"{where}: the image cell is {type(cell).__name__} {repr(cell)[:60]}, not image bytes, an "
            "Image struct or a path",
        )
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts:
        return _Image(
            where,
            error=f"{where}: image path {name!r} leaves the parquet file's folder: store the image bytes, or a "
            "path relative to the parquet file",
        )
    path = folder / str(rel)
    if not is_file(path):
        return _Image(where, error=f"{where}: image file {name!r} (next to the parquet file) is missing")
    return _Image("file:" + str(folder_rel / rel), str(path))


def _pointing_turn(texts: dict[str, list[object]], points: list[object], row: int, where: str) -> RawTurn:
    """The pointing turn of a row (sources/web_points.py). Raises FieldError."""
    column = "label" if "label" in texts else "question"
    prompt = pointing_prompt(column, texts[column][row], f"{where} {column}")
    return RawTurn("pointing", prompt, "", points=point_list(points[row], f"{where} points"), where=where)


def _row_turns(
    texts: dict[str, list[object]], points: list[object] | None, row: int, where: str
) -> tuple[list[RawTurn], int]:
    """The turns of one row and how many of its text cells were empty. Raises FieldError."""
    turns, empty = [], 0
    if "caption" in texts:
        captions = text_list(texts["caption"][row], f"{where} caption")
        turns += [RawTurn("caption", CAPTION_PROMPT, t) for t in captions]
        empty += not captions
    if points is not None:  # with points, `question` is the pointing prompt (WebSource.check)
        turns.append(_pointing_turn(texts, points, row, where))
    elif "question" in texts:
        question = text_list(texts["question"][row], f"{where} question")
        if len(question) > 1:
            raise FieldError(f"{where} question holds {len(question)} questions where one is expected")
        answer = answer_text(texts["answer"][row], f"{where} answer")
        if question and answer:
            turns.append(RawTurn("vqa", f"answer en {question[0]}", answer))
        else:
            empty += 1
    return turns, empty


@dataclass
class _Group:
    source_file: str
    path: str
    row: int
    turns: list[RawTurn] = field(default_factory=list)
    empty: int = 0
    error: str | None = None
    error_field: str = "image"


def _file_groups(path: Path, rel: str, src: WebSource, groups: dict[str, _Group]) -> None:
    cols = {"image": "image", **src.columns}
    table = _read_listing_table(path)
    if isinstance(table, str):
        groups[rel] = _Group(rel, str(path), -1, error=f"{rel} {table}")
        return
    missing = [c for c in cols.values() if c not in table.column_names]
    if missing:
        raise ConfigError(
            f"{path}: no column(s) {missing}; map them with `columns:` (have {table.column_names})"
        )
    images = table.column(cols["image"]).to_pylist()
    texts = {k: _text_cells(table, c) for k, c in cols.items() if k not in ("image", "points")}
    points = table.column(cols["points"]).to_pylist() if "points" in cols else None
    for row, cell in enumerate(images):
        where = f"{rel}#{row}"
        image = _image(cell, path.parent, where, PurePosixPath(rel).parent)
        if image.error:
            groups[where] = _Group(where, str(path), row, error=image.error)
            continue
        try:
            turns, empty = _row_turns(texts, points, row, where)
        except FieldError as e:
            groups[where] = _Group(
                where,
                str(path),
                row,
                error=f"{e}: fix or drop that row",
                error_field="points" if isinstance(e, PointError) else "text",
            )
            continue
        problem = undecoded_text(turns)
        if problem or not turns:
            reason = (
                f"{where}: {problem}" if problem else f"{where}: no caption, or question and answer, text"
            )
            groups[where] = _Group(where, str(path), row, error=reason, error_field="text")
            continue
        group = groups.setdefault(
            image.key, _Group(where, image.path or str(path), -1 if image.path else row)
        )
        group.turns += turns
        group.empty += empty


def parquet_items(sources: SourcesFile, src: WebSource) -> list[ItemRef]:
    groups: dict[str, _Group] = {}
    for path in resolve_files(sources.root, str(src.path), (".parquet",)):
        rel = display(path, sources.root)
        _file_groups(path, rel, src, groups)
    refs = []
    for k, (key, g) in enumerate(groups.items()):
        kind, _, name = key.partition(":")
        image_id = name if kind in ("bytes", "file") and name else g.source_file
        counts = Counter({"texts_empty": g.empty} if g.empty else {})
        refs.append(
            ItemRef(
                k,
                image_id,
                g.source_file,
                g.path,
                g.row,
                tuple(g.turns),
                g.error,
                g.error_field,
                tuple(sorted(counts.items())),
            )
        )
    return refs
