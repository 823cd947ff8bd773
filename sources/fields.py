"""The one way a reader takes a value out of a source: each accessor states the shape it expects and
converts by a written rule, or raises FieldError with the reason. Nothing is turned into text with
`str()` and nothing becomes zeros: a value of an unexpected type is refused, never guessed.

- `scalar_text`: one text (str, UTF-8 bytes, a numpy string scalar, or an array holding exactly one).
- `text_list`: a list of texts (one text counts as a list of one; null as none).
- `per_step_text`: a text per step of an episode from one text, a (1,) array or a (T,) array.
- `numeric_matrix`: rows of numbers of equal width (bools and strings refused).
- `vqa_answer`: the VQAv2 answer of a list of human answers (the most common one).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = [
    "FieldError",
    "is_null",
    "numeric_matrix",
    "per_step_text",
    "scalar_text",
    "text_list",
    "vqa_answer",
]


class FieldError(ValueError):
    """A source value whose shape or type is not the one its field needs; the message is the reason."""


def _short(value: object, limit: int = 80) -> str:
    return repr(value)[:limit]


def is_null(value: object) -> bool:
    """None, or a float NaN (pandas and pyarrow spell a missing cell either way)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _decode(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FieldError(f"{what} is not UTF-8 text ({e}): re-write it as UTF-8") from None


def _one_text(value: object, what: str) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return _decode(bytes(value), what)
    raise FieldError(f"{what} is {type(value).__name__} {_short(value)}, not text")


def _clean(text: str) -> str | None:
    """Whitespace collapsed; an empty text is no text."""
    return " ".join(text.split()) or None


def scalar_text(value: object, what: str) -> str | None:
    """One text, or None for null/empty. A list or array is accepted only when it holds exactly one
    text, or the same text in every entry (an HDF5 instruction stored as (1,) or repeated per step)."""
    if is_null(value):
        return None
    if isinstance(value, np.ndarray | list | tuple):
        texts = [_one_text(v, what) for v in np.asarray(value, dtype=object).ravel()]
        distinct = list(dict.fromkeys(_clean(t) for t in texts))
        if len(distinct) > 1:
            raise FieldError(
                f"{what} holds {len(texts)} different texts ({_short(distinct)}) where one text is expected"
            )
        return distinct[0] if distinct else None
    return _clean(_one_text(value, what))


def text_list(value: object, what: str) -> list[str]:
    """Texts in order, empty ones left out: a list/array of texts, or one text as a list of one."""
    if is_null(value):
        return []
    if isinstance(value, np.ndarray | list | tuple):
        items = np.asarray(value, dtype=object).ravel() if isinstance(value, np.ndarray) else value
        out = []
        for k, v in enumerate(items):
            if is_null(v):
                continue
            if isinstance(v, list | tuple | np.ndarray | dict):
                raise FieldError(f"{what}[{k}] is {type(v).__name__} {_short(v)}, not text")
            t = _clean(_one_text(v, f"{what}[{k}]"))
            if t is not None:
                out.append(t)
        return out
    t = _clean(_one_text(value, what))
    return [t] if t is not None else []


def per_step_text(value: object, steps: int, what: str) -> list[str | None]:
    """A text per step: one text (or a (1,) array) holds for every step; a (steps,) array gives each
    step its own (a text that changes within the episode stays per step). Any other length is refused."""
    if is_null(value):
        return [None] * steps
    if isinstance(value, np.ndarray | list | tuple):
        flat = list(np.asarray(value, dtype=object).ravel()) if isinstance(value, np.ndarray) else list(value)
        if len(flat) == 1:
            return [scalar_text(flat[0], what)] * steps
        if len(flat) != steps:
            raise FieldError(
                f"{what} holds {len(flat)} texts, the episode has {steps} steps: expected one text or one per step"
            )
        return [None if is_null(v) else _clean(_one_text(v, f"{what}[{k}]")) for k, v in enumerate(flat)]
    return [scalar_text(value, what)] * steps


def numeric_matrix(values: object, rows: int | None, what: str) -> np.ndarray:
    """(rows, width) float32 from a 2-D numeric array, a list of equal-length numeric lists, or a 1-D array
    of scalars (width 1). Strings, bools, objects and ragged rows are refused with the first bad row."""
    if isinstance(values, np.ndarray) and values.dtype != object:
        arr = values
    else:
        seq = list(values) if isinstance(values, Sequence | np.ndarray) else None
        if seq is None:
            raise FieldError(f"{what} is {type(values).__name__}, not a list of numeric rows")
        widths = []
        for k, row in enumerate(seq):
            if is_null(row) or isinstance(row, str | bytes | dict):
                raise FieldError(f"{what} row {k} is {_short(row)}, not numbers")
            widths.append(len(row) if isinstance(row, list | tuple | np.ndarray) else 1)
            if widths[k] != widths[0]:
                raise FieldError(f"{what} row {k} holds {widths[k]} values, row 0 holds {widths[0]}")
        try:
            arr = np.asarray(seq)
        except ValueError as e:
            raise FieldError(f"{what}: rows that disagree in shape ({e})") from None
    if arr.dtype.kind == "b":
        raise FieldError(f"{what} holds booleans where numbers are expected")
    if arr.dtype.kind not in "iuf":
        raise FieldError(f"{what} holds {arr.dtype} values, not numbers")
    if arr.ndim == 0:
        raise FieldError(f"{what} is one number, not rows of numbers")
    if arr.size == 0:
        arr = arr.reshape(len(arr), arr.shape[1] if arr.ndim == 2 else 1)
    arr = arr.reshape(len(arr), -1) if arr.ndim != 2 else arr
    if rows is not None and len(arr) != rows:
        raise FieldError(f"{what} has {len(arr)} rows, expected {rows}")
    return arr.astype(np.float32)


_PUNCT = re.compile(r"[^\w\s']")


def _vqa_normal(answer: str) -> str:
    """VQAv2's evaluation compares answers lower-cased, without punctuation and extra spaces."""
    return " ".join(_PUNCT.sub(" ", answer.lower()).split())


def vqa_answer(answers: Sequence[str]) -> str | None:
    """The most common answer (compared as VQAv2's evaluation normalizes them), as first written; ties go
    to the answer given first. None when there is no answer."""
    texts = [a for a in answers if a and a.strip()]
    if not texts:
        return None
    counts = Counter(_vqa_normal(a) for a in texts)
    best = max(counts.values())
    return next(" ".join(a.split()) for a in texts if counts[_vqa_normal(a)] == best)
