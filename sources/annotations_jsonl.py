"""HL and VI annotations (docs/design.md §7): JSONL spans in seconds from the episode's start.

HL lines: `{"dataset", "episode", "start", "end", "subtask"}`. VI lines: `{"dataset", "episode", "time",
"instruction"}`; an instruction holds until the next one or the episode's end. Times count seconds, or
frames where the sources entry says `units: frames` (a line may say its own `"units"`). `episode` is the
source's own id: the number LeRobot's `episode_index` or an ALOHA file name carries, or the file stem
(`"episode_3"`, `"demo_red"`) as text: identity never follows the position in a listing. Overlapping subtask spans,
spans outside the episode, unknown datasets or episodes and malformed lines are quarantined, one line at a
time, with the reason; the rest are turned into frame ranges.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass

from vlamix.schemas.quarantine import QuarantineRecord
from vlamix.sources.config import AnnotationSource, SourcesFile
from vlamix.sources.location import locate, read_bytes

__all__ = ["EpisodeInfo", "Span", "read_spans"]


@dataclass(frozen=True)
class Span:
    """Frames [start, end) of one robot episode and the text in force over them."""

    episode: int
    start: int
    end: int
    text: str
    line: int  # 1-based line in the JSONL file

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class EpisodeInfo:
    frames: int
    fps: float
    status: str  # "written", or why it is not (quarantined, duplicate of episode N)
    names: tuple[str, ...] = ()  # the episode's own id as text: its file stem, its `episode_NNNNNN` name


UNITS = ("seconds", "frames")


def _episode_of(value: object, episodes: dict[int, EpisodeInfo]) -> int | None:
    """The episode a line addresses: an int id, its decimal text, or one of the episode's names."""
    if isinstance(value, bool):  # `true` is not episode 1
        return None
    if isinstance(value, int):
        return value if value in episodes else None
    if isinstance(value, str):
        if value.isdecimal() and value.isascii():
            return int(value) if int(value) in episodes else None
        return next((e for e, info in episodes.items() if value in info.names), None)
    return None


def _bad(
    src: AnnotationSource,
    rel: str,
    line: int,
    reason: str,
    episode: int | None = None,
    field: str | None = None,
) -> QuarantineRecord:
    return QuarantineRecord(src.name, f"{rel}:{line}", reason, episode, None, None, field)


def _seconds(value: object) -> bool:
    """A JSON number a float can hold (not a bool, not an int past 1e308); NaN and inf are caught later."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _units_hint(src: AnnotationSource, obj: dict) -> str:
    if obj.get("units", src.units) == "seconds":
        return ": spans counted in frames? declare `units: frames` in the sources entry"
    return ""


def _frame_number(value: object) -> bool:
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def read_spans(
    sources: SourcesFile, src: AnnotationSource, episodes: dict[int, EpisodeInfo]
) -> tuple[list[Span], list[QuarantineRecord], int]:
    """(valid spans, quarantined lines, lines read) of one annotation file against its robot dataset."""
    path = locate(sources.root, src.path)
    rel = src.path
    text_key = "subtask" if src.kind == "HL" else "instruction"
    need = (
        ("dataset", "episode", "start", "end", "subtask")
        if src.kind == "HL"
        else ("dataset", "episode", "time", "instruction")
    )
    raw: list[tuple[int, dict]] = []
    bad: list[QuarantineRecord] = []
    lines = read_bytes(path).splitlines()
    for n, blob in enumerate(lines, start=1):
        if not blob.strip():
            continue
        try:
            obj = json.loads(blob.decode("utf-8"))
        except UnicodeDecodeError as e:
            bad.append(_bad(src, rel, n, f"not UTF-8: {e}"))
            continue
        except json.JSONDecodeError as e:
            bad.append(_bad(src, rel, n, f"not a JSON object: {e}"))
            continue
        except (ValueError, RecursionError) as e:  # an int of over 4300 digits, arrays nested too deep
            bad.append(_bad(src, rel, n, f"does not parse as JSON: {str(e)[:200]}"))
            continue
        missing = [k for k in need if not isinstance(obj, dict) or k not in obj]
        if missing:
            bad.append(_bad(src, rel, n, f"missing {missing} (a {src.kind} line has {list(need)})"))
            continue
        if obj["dataset"] != src.dataset:
            bad.append(
                _bad(
                    src,
                    rel,
                    n,
                    f"points into dataset {obj['dataset']!r}, this file annotates {src.dataset!r}",
                    field="dataset",
                )
            )
            continue
        episode = _episode_of(obj["episode"], episodes)
        if episode is None:
            bad.append(
                _bad(
                    src,
                    rel,
                    n,
                    f"unknown episode {repr(obj['episode'])[:60]} of {src.dataset} (episodes are addressed by "
                    "the source's own id: LeRobot's episode_index, the number in a file name, or the file stem)",
                    field="episode",
                )
            )
            continue
        obj = {**obj, "episode": episode}
        info = episodes[episode]
        if info.status != "written":
            bad.append(
                _bad(
                    src,
                    rel,
                    n,
                    f"episode {obj['episode']} of {src.dataset} was not written ({info.status})",
                    obj["episode"],
                    "episode",
                )
            )
            continue
        units = obj.get("units", src.units)
        if units not in UNITS:
            bad.append(_bad(src, rel, n, f"units {repr(units)[:40]} is not one of {UNITS}", episode, "units"))
            continue
        times = [k for k in need if k in ("start", "end", "time")]
        wrong = [
            k for k in times if not _seconds(obj[k]) or (units == "frames" and not _frame_number(obj[k]))
        ]
        if wrong:
            what = "a frame number (a whole number)" if units == "frames" else "a number of seconds"
            bad.append(
                _bad(
                    src,
                    rel,
                    n,
                    f"{wrong[0]} is {repr(obj[wrong[0]])[:60]}, not {what} from the episode's start",
                    obj["episode"],
                    wrong[0],
                )
            )
            continue
        if units == "frames":  # frames -> seconds at the episode's rate (frame k starts at k / fps)
            obj = {**obj, **{k: obj[k] / info.fps for k in times}}
        if not isinstance(obj[text_key], str) or not obj[text_key].strip():
            bad.append(_bad(src, rel, n, f"empty {text_key}", obj["episode"], text_key))
            continue
        raw.append((n, obj))
    spans: list[Span] = []
    by_episode: dict[int, list[tuple[int, dict]]] = defaultdict(list)
    for n, obj in raw:
        by_episode[obj["episode"]].append((n, obj))
    for episode in sorted(by_episode):
        info = episodes[episode]
        duration = info.frames / info.fps
        items = sorted(
            by_episode[episode], key=lambda it: (it[1]["start" if src.kind == "HL" else "time"], it[0])
        )
        if src.kind == "VI":
            items = [
                (
                    n,
                    {
                        **o,
                        "start": o["time"],
                        # until the next one, never past the episode's end (a next one out there is
                        # quarantined alone, not with the one before it)
                        "end": min(items[k + 1][1]["time"], duration) if k + 1 < len(items) else duration,
                    },
                )
                for k, (n, o) in enumerate(items)
            ]
        last_end, last_line = -math.inf, 0
        for n, obj in items:
            start, end = float(obj["start"]), float(obj["end"])
            if not (0.0 <= start < end <= duration + 1e-9):
                bad.append(
                    _bad(
                        src,
                        rel,
                        n,
                        f"span [{start}, {end}] s is outside episode {episode} (0 to {duration:.3f} s, "
                        f"{info.frames} frames at {info.fps:g} Hz){_units_hint(src, obj)}",
                        episode,
                        "start",
                    )
                )
                continue
            if start < last_end - 1e-9:
                bad.append(
                    _bad(
                        src,
                        rel,
                        n,
                        f"overlaps the span of line {last_line} (ends at {last_end} s)",
                        episode,
                        "start",
                    )
                )
                continue
            first, stop = (
                math.ceil(start * info.fps - 1e-6),
                min(info.frames, math.ceil(end * info.fps - 1e-6)),
            )
            if stop <= first:
                bad.append(
                    _bad(
                        src,
                        rel,
                        n,
                        f"span [{start}, {end}] s holds no frame at {info.fps} Hz",
                        episode,
                        "start",
                    )
                )
                continue
            spans.append(Span(episode, first, stop, " ".join(obj[text_key].split()), n))
            last_end, last_line = end, n
    return spans, bad, sum(1 for blob in lines if blob.strip())
