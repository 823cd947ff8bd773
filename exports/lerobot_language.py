"""Subtasks and verbal instructions as LeRobot's per-frame language columns.

`--language columns` (default), as LeRobot (0.6 and later) names and shapes them (`lerobot.datasets.language`):
- `language_persistent`: on every frame of an episode, the list of the episode's persistent rows. A subtask
  is a row `{role: assistant, style: subtask, content, timestamp}` stamped with the time its span starts;
  LeRobot's `active_at(t, style=subtask)` then gives the subtask in force at `t`.
- `language_events`: on the frame where a verbal instruction is given (its span's first frame), a row
  `{role: user, style: interjection, content}`; every other frame holds an empty list.
Spans come from the HL/VI datasets that annotate the robot dataset, and from the frames' own `subtask` /
`verbal_instruction` fields where the source records them (a row where the value changes).

`--language subtask-index` is the form of LeRobot 0.4/0.5: an int64 `subtask_index` per frame and
`meta/subtasks.parquet` (subtask text -> index). It has no place for verbal instructions, and a frame must
have a subtask: either missing is refused with one line. `--language none` writes tasks only, and the
summary lists the annotation datasets left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from vlamix.sources.annotations_jsonl import Span

__all__ = [
    "EVENTS",
    "LANGUAGE_FORMS",
    "PERSISTENT",
    "EpisodeLanguage",
    "events_type",
    "language_array",
    "language_of",
    "persistent_type",
]

PERSISTENT, EVENTS = "language_persistent", "language_events"
LANGUAGE_FORMS = ("columns", "subtask-index", "none")


def _row_fields(with_time: bool) -> list[pa.Field]:
    fields = [
        pa.field("role", pa.string(), nullable=False),
        pa.field("content", pa.string()),
        pa.field("style", pa.string()),
    ]
    if with_time:
        fields.append(pa.field("timestamp", pa.float32(), nullable=False))
    return [*fields, pa.field("camera", pa.string()), pa.field("tool_calls", pa.list_(pa.json_()))]


def persistent_type() -> pa.DataType:
    return pa.list_(pa.struct(_row_fields(True)))


def events_type() -> pa.DataType:
    return pa.list_(pa.struct(_row_fields(False)))


def language_array(per_frame: list[list[dict]], kind: str) -> pa.Array:
    """A language column from per-frame row lists. pyarrow cannot build JSON extension values from Python
    objects, so the rows are built with `tool_calls` as strings and cast to LeRobot's type (all null here)."""
    typed = persistent_type() if kind == PERSISTENT else events_type()
    plain = pa.list_(
        pa.struct(
            [
                pa.field(f.name, pa.list_(pa.string()), nullable=f.nullable) if f.name == "tool_calls" else f
                for f in typed.value_type
            ]
        )
    )
    return pa.array(per_frame, type=plain).cast(typed)


@dataclass(frozen=True)
class EpisodeLanguage:
    """The language of one episode: per frame, the subtask in force (or None) and the verbal instruction
    given at that frame (or None); `changes` are the subtask rows (frame, text) in order."""

    subtask: list[str | None]
    given: list[str | None]

    def persistent_rows(self, fps: int) -> list[dict]:
        rows, last = [], None
        for f, text in enumerate(self.subtask):
            if text is not None and text != last:
                rows.append(_row("assistant", text, "subtask", f / fps))
            last = text
        return rows

    def event_rows(self, frame: int) -> list[dict]:
        text = self.given[frame]
        return [] if text is None else [_row("user", text, "interjection")]


def _row(role: str, content: str, style: str, timestamp: float | None = None) -> dict:
    row = {"role": role, "content": content, "style": style}
    if timestamp is not None:
        row["timestamp"] = timestamp
    return row | {"camera": None, "tool_calls": None}


def _per_frame(n: int, spans: tuple[Span, ...], recorded: list[str | None], at_start_only: bool) -> list:
    out: list[str | None] = list(recorded)
    if at_start_only:  # an instruction is given once: where the source's value changes
        out = [
            t if t is not None and (f == 0 or recorded[f - 1] != t) else None for f, t in enumerate(recorded)
        ]
    for s in spans:
        if at_start_only:
            out[min(s.start, n - 1)] = s.text
        else:
            for f in range(s.start, min(s.end, n)):
                out[f] = s.text
    return out


def language_of(
    n: int,
    hl: tuple[Span, ...],
    vi: tuple[Span, ...],
    subtask_column: list[str | None],
    verbal_column: list[str | None],
) -> EpisodeLanguage:
    """The episode's language from its HL and VI spans (which win where they overlap the source's own)."""
    return EpisodeLanguage(_per_frame(n, hl, subtask_column, False), _per_frame(n, vi, verbal_column, True))
