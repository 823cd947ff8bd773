"""What a LeRobot dataset's metadata files say: `meta/info.json` (cached per dataset root), the episode
list (`meta/episodes.jsonl` in v2.x, `meta/episodes/*/*.parquet` in v3.0), the `splits`, and the task
texts (`meta/tasks.jsonl` / `meta/tasks.parquet`). Problems with the dataset as a whole are ConfigErrors
(raised in the driver, before any worker reads); problems with one episode's files are BadRecords.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vlamix.config import ConfigError
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.fields import FieldError, scalar_text
from vlamix.sources.frames import one_line, parquet_size_problem
from vlamix.sources.location import Location, Unreachable, glob_files, locate, read_bytes, readable

__all__ = [
    "EPISODES_GLOB",
    "EPISODES_JSONL",
    "IMAGE_PREFIX",
    "INFO_PATH",
    "TASKS_JSONL",
    "TASKS_PARQUET",
    "VERSIONS",
    "Episode",
    "Tasks",
    "read_episodes_meta",
    "read_info",
    "read_parquet",
    "read_tasks",
    "split_ranges",
    "tasks_file",
]

INFO_PATH = "meta/info.json"
EPISODES_JSONL = "meta/episodes.jsonl"  # v2.x
EPISODES_GLOB = "meta/episodes/*/*.parquet"  # v3.0
TASKS_JSONL = "meta/tasks.jsonl"  # v2.x
TASKS_PARQUET = "meta/tasks.parquet"  # v3.0
VERSIONS = ("v2.0", "v2.1", "v3.0")
IMAGE_PREFIX = "observation.images."


@cache
def read_info(root: str) -> dict:
    """`meta/info.json` of the dataset at `root`, its `codebase_version` checked."""
    path = locate("/", root) / INFO_PATH
    try:
        info = json.loads(read_bytes(path).decode("utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{root}: no {INFO_PATH}; point `path` at a LeRobot dataset's root folder") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it: {e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 ({e}); re-write it as UTF-8 JSON") from e
    except (ValueError, RecursionError) as e:  # JSONDecodeError, an int of over 4300 digits, deep nesting
        raise ConfigError(f"{path}: not valid JSON ({str(e)[:200]}); re-export the dataset's metadata") from e
    if not isinstance(info, dict):
        raise ConfigError(
            f"{path}: holds a JSON {type(info).__name__}, not an object with `codebase_version`, "
            "`features`, ...; re-export the dataset's metadata"
        )
    version = info.get("codebase_version")
    if version not in VERSIONS:
        raise ConfigError(
            f"{path}: codebase_version {version!r} is not one this reader knows ({', '.join(VERSIONS)})"
        )
    return info


_SPLIT = re.compile(r"(0|[1-9][0-9]{0,17}):(0|[1-9][0-9]{0,17})")  # no leading zeros: one way to write each


def split_ranges(info: dict, path: str | Path = INFO_PATH) -> list[tuple[str, int, int]]:
    """(split, first episode, end episode) of info.json's `splits`, e.g. {"train": "0:40"}."""
    splits = info.get("splits") or {}
    if not isinstance(splits, dict):
        raise ConfigError(
            f"{path}: splits is {repr(splits)[:60]}, not a mapping of split name to `start:end` episodes"
        )
    out = []
    for name, spec in splits.items():
        m = _SPLIT.fullmatch(spec) if isinstance(spec, str) else None
        if m is None or int(m[1]) > int(m[2]):
            raise ConfigError(
                f"{path}: split {name!r} is {repr(spec)[:60]}, not `start:end` episode indices (plain "
                'integers, start <= end, e.g. "0:40"); fix `splits` in it'
            )
        out.append(({"validation": "val"}.get(name, name), int(m[1]), int(m[2])))
    return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_episodes_meta(root: Location, info: dict) -> list[dict]:
    """The episodes' metadata rows, by `episode_index`. Each row needs an integer `episode_index` (the
    dataset's own id of the episode: gaps are kept, never renumbered) and `length`; an index listed twice
    is an error, since annotations and keys address episodes by it."""
    rows: list[tuple[str, dict]] = []  # (where, row)
    if info["codebase_version"] == "v3.0":
        files = sorted(glob_files(root / "meta/episodes", "*/*.parquet"), key=str)
        if not files:
            raise ConfigError(f"{root}: no {EPISODES_GLOB}; the dataset's episode list is missing")
        for f in files:
            try:
                with readable(f) as where:
                    table = pq.read_table(where)
            except (pa.ArrowException, OSError) as e:
                raise ConfigError(f"{f}: does not read as parquet: {one_line(e)}; re-export it") from e
            rel = f.relative_to(root)
            rows += [(f"{rel} row {k}", r) for k, r in enumerate(table.to_pylist())]
    else:
        path = root / EPISODES_JSONL
        try:
            lines = read_bytes(path).splitlines()
        except FileNotFoundError as e:
            raise ConfigError(f"{root}: no {EPISODES_JSONL}; the dataset's episode list is missing") from e
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
            except (ValueError, RecursionError) as e:
                raise ConfigError(
                    f"{path} line {n}: not a JSON line ({str(e)[:120]}); fix or remove it"
                ) from e
            if not isinstance(row, dict):
                raise ConfigError(
                    f"{path} line {n}: holds a JSON {type(row).__name__}, not an episode object"
                )
            rows.append((f"{EPISODES_JSONL} line {n}", row))
    seen: dict[int, str] = {}
    for where, row in rows:
        for key in ("episode_index", "length"):
            if not _is_int(row.get(key)) or row[key] < 0:
                raise ConfigError(
                    f"{root}: {where}: {key} is {repr(row.get(key))[:40]}, not an integer >= 0; "
                    "re-export the dataset's metadata"
                )
        e = row["episode_index"]
        if e in seen:
            raise ConfigError(
                f"{root}: episode_index {e} is listed twice ({seen[e]} and {where}); remove the duplicate"
            )
        seen[e] = where
    return sorted((r for _, r in rows), key=lambda r: r["episode_index"])


class Episode:
    """One episode being read: its reference, and the BadRecord that quarantines it."""

    def __init__(self, ref: EpisodeRef):
        self.ref = ref

    def bad(self, reason: str, field: str | None = None, frame: int | None = None) -> BadRecord:
        r = self.ref
        return BadRecord(
            QuarantineRecord(r.dataset, r.source_file, reason, r.index, None, frame, field, r.frames)
        )


def read_parquet(
    path: Location, root: Location, ep: Episode, columns: list[str] | None = None, episode: int | None = None
) -> pa.Table:
    """A parquet file, its declared (uncompressed) size checked against the cap first. With `episode`
    (v3.0 files hold many), only the row groups whose `episode_index` statistics can hold it are read:
    at a URL, the bytes of the other episodes are never fetched."""
    rel = path.relative_to(root)
    try:
        with readable(path) as where:
            pf = pq.ParquetFile(where)
            groups = None if episode is None else _row_groups_holding(pf.metadata, episode)
            too_big = parquet_size_problem(pf.metadata, groups)
            if too_big:
                raise ep.bad(f"{rel} {too_big}")
            if groups is None:
                return pf.read(columns=columns)
            return pf.read_row_groups(groups, columns=columns)
    except FileNotFoundError as e:
        raise ep.bad(f"{rel} is missing") from e
    except Unreachable as e:
        raise ep.bad(one_line(e)) from e
    except (pa.ArrowException, OSError) as e:  # thrift and page errors are OSErrors, bad magic ArrowInvalid
        raise ep.bad(
            f"{rel} does not read as parquet: {one_line(e)} (truncated or corrupted? re-download or re-export it)"
        ) from e


def _row_groups_holding(metadata: pq.FileMetaData, episode: int) -> list[int] | None:
    """The row groups whose `episode_index` min..max holds `episode`; None (read all) when a row group
    has no statistics for it or the column is not a plain integer."""
    if metadata.num_row_groups == 0:
        return None
    first = metadata.row_group(0)
    col = next(
        (j for j in range(first.num_columns) if first.column(j).path_in_schema == "episode_index"), None
    )
    if col is None:
        return None
    groups = []
    for i in range(metadata.num_row_groups):
        stats = metadata.row_group(i).column(col).statistics
        if stats is None or not stats.has_min_max or not isinstance(stats.min, int):
            return None
        if stats.min <= episode <= stats.max:
            groups.append(i)
    return groups


@dataclass(frozen=True)
class Tasks:
    """task_index -> task text (None: empty), and task_index -> why its text is refused."""

    texts: dict[int, str | None]
    problems: dict[int, str]


def tasks_file(info: dict) -> str:
    return TASKS_PARQUET if info["codebase_version"] == "v3.0" else TASKS_JSONL


def _task_text(value: object, k: int, file: str, tasks: Tasks) -> None:
    """Text by scalar_text's rules (a number or a list of two texts is refused, never str()-ed)."""
    if isinstance(value, str):  # decoded with surrogateescape: bytes again, so invalid UTF-8 is caught
        value = value.encode("utf-8", "surrogateescape")
    try:
        tasks.texts[k] = scalar_text(value, f"the text of task_index {k} in {file}")
    except FieldError as e:
        tasks.problems[k] = str(e)


def read_tasks(root: Location, info: dict, ep: Episode) -> Tasks:
    """The task texts; a text that is not UTF-8, or not text, is a problem of the episodes using it."""
    file = tasks_file(info)
    tasks = Tasks({}, {})
    if info["codebase_version"] == "v3.0":
        t = read_parquet(root / TASKS_PARQUET, root, ep)
        others = [c for c in t.column_names if c != "task_index"]
        name = "task" if "task" in others else (others[0] if len(others) == 1 else None)
        if "task_index" not in t.column_names or name is None:
            raise ep.bad(
                f"{file} has columns {t.column_names}, not task_index and one task text column: re-export it",
                "task",
            )
        column = t.column(name)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            column = column.cast(pa.binary())  # bytes: invalid UTF-8 must not raise here
        for k, value in zip(t.column("task_index").to_pylist(), column.to_pylist(), strict=True):
            if _is_int(k):
                _task_text(value, k, file, tasks)
        return tasks
    try:
        lines = read_bytes(root / TASKS_JSONL).splitlines()
    except FileNotFoundError as e:
        raise ep.bad(f"{file} is missing", "task_index") from e
    except Unreachable as e:
        raise ep.bad(one_line(e), "task_index") from e
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line.decode("utf-8", "surrogateescape"))
            k = d["task_index"]
            if not _is_int(k):
                raise TypeError(f"task_index is {repr(k)[:40]}, not an integer")
            _task_text(d["task"], k, file, tasks)
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise ep.bad(f"{file} line {n} is not a task line ({e}): fix or remove it", "task") from e
    return tasks
