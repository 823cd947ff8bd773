"""The environment an episode was recorded in (docs/design.md §24): the room, home or site whose count the
environment-scaling study varies. A robot dataset's `environment:` in the sources file is one of

- a constant: `environment: kitchen` (every episode of the dataset);
- a field of the source: `environment: {field: room}`: a LeRobot per-episode column of
  `meta/episodes` (or a per-frame column holding one value over the episode, or `task`: the episode's
  task), an RLDS feature (`episode_metadata/...`), an HDF5 attribute of the episode's group or file (or a
  dataset holding one text). Formats mcap and zarr have no per-episode field and take the other forms;
- a pattern over the episode's file path: `environment: "{path.parent.name}"` (`{path.name}`,
  `{path.stem}`, any number of `.parent`), with text around it: `"lab_b/{path.parent.name}"`.

A field's value must be one text (UTF-8 bytes and a (1,) array of one text count; numbers are refused,
never turned into text). An episode whose field is missing, null, empty or not text is quarantined naming
the field; the readers check the field on the first episode at listing (or, for LeRobot and RLDS, in the
dataset's metadata), where a missing field is a configuration error. Names are whitespace-collapsed, at
most MAX_NAME characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from vlamix.sources.episode import EpisodeRef
from vlamix.sources.fields import FieldError, scalar_text

__all__ = [
    "FIELD_FORMATS",
    "MAX_NAME",
    "EnvironmentField",
    "check_environment",
    "environment_field",
    "environment_of",
]

FIELD_FORMATS = ("aloha_hdf5", "hdf5", "lerobot", "rlds")  # formats with a per-episode field to read
MAX_NAME = 200
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_PATH_PART = re.compile(r"path((?:\.parent)*)\.(name|stem)")
_PATTERN_HELP = "`{path.name}`, `{path.stem}` or `{path.parent.name}` (any number of `.parent`)"


@dataclass(frozen=True)
class EnvironmentField:
    """`environment: {field: NAME}`: the episode's environment is the value of a field of the source."""

    field: str


Setting = str | EnvironmentField | None


def environment_field(setting: Setting) -> str | None:
    """The field a setting reads, or None (a constant, a pattern, or no setting)."""
    return setting.field if isinstance(setting, EnvironmentField) else None


def check_environment(setting: Setting, fmt: str) -> None:
    """ValueError for a setting that cannot work: an empty one, a placeholder other than the path's
    parts, an unbalanced brace, or a field for a format that has none per episode."""
    if setting is None:
        return
    if isinstance(setting, EnvironmentField):
        if not setting.field.strip():
            raise ValueError("`environment: {field: ...}` names no field")
        if fmt not in FIELD_FORMATS:
            raise ValueError(
                f"format {fmt} has no per-episode field to read an environment from: give a constant "
                '(`environment: kitchen`) or a pattern over the file path (`environment: "{path.parent.name}"`)'
            )
        return
    if not setting.strip():
        raise ValueError("`environment:` is empty: give a name, {field: ...} or a path pattern")
    for inner in _PLACEHOLDER.findall(setting):
        if not _PATH_PART.fullmatch(inner):
            raise ValueError(
                f"`environment: {setting}`: placeholder {{{inner}}} is not one of {_PATTERN_HELP}"
            )
    if "{" in _PLACEHOLDER.sub("", setting) or "}" in _PLACEHOLDER.sub("", setting):
        raise ValueError(f"`environment: {setting}`: an unbalanced brace; placeholders are {_PATTERN_HELP}")


def _clean(name: str | None, what: str) -> str:
    text = " ".join((name or "").split())
    if not text:
        raise FieldError(f"{what} is empty: an episode needs an environment name")
    if len(text) > MAX_NAME:
        raise FieldError(f"{what} is {len(text)} characters long, above {MAX_NAME}: {text[:40]!r}...")
    return text


def _fill(pattern: str, path: str) -> str:
    def part(m: re.Match) -> str:
        inner = _PATH_PART.fullmatch(m.group(1))
        if inner is None:  # check_environment refuses any other placeholder at load
            raise FieldError(f"placeholder {m.group(0)} is not one of {_PATTERN_HELP}")
        p = PurePosixPath(path)
        for _ in range(inner.group(1).count(".parent")):
            p = p.parent
        return p.name if inner.group(2) == "name" else p.stem

    return _PLACEHOLDER.sub(part, pattern)


def environment_of(setting: Setting, ref: EpisodeRef, lookup: Callable[[str], object] | None) -> str | None:
    """The episode's environment: the constant, the pattern filled from the episode's file path, or the
    field's value found by `lookup(field)` (None when the episode lacks it). None without a setting.
    Raises FieldError for a field value that is missing or not one text, and for an empty name."""
    if setting is None:
        return None
    if isinstance(setting, EnvironmentField):
        if lookup is None:  # check_environment refuses this at load
            raise FieldError(f"this format has no field to read environment {setting.field!r} from")
        what = f"environment field {setting.field!r}"
        value = lookup(setting.field)
        if value is None:
            raise FieldError(f"the episode has no {what} (the sources file's `environment:`)")
        return _clean(scalar_text(value, what), what)
    if not _PLACEHOLDER.search(setting):
        return _clean(setting, "`environment:`")
    path = ref.path.split("://", 1)[-1]  # a URL's path parts are the same as a local file's
    return _clean(_fill(setting, path), f"`environment: {setting}` for {ref.source_file}")
