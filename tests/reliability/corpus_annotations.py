"""Bad HL (subtask span) and VI (verbal instruction) annotation lines over a robot dataset: each case is
one JSONL line, after one good line per written episode. Records name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from corpus_kit import Case, Format, Quarantined, Target

__all__ = ["CASES", "HL", "VI"]


def _line(**fields) -> Callable[[Target, str], bytes]:
    """A line whose `episode` may be a Target attribute name (resolved when written)."""

    def make(target: Target, robot: str) -> bytes:
        obj = {"dataset": robot, **fields}
        ep = obj.get("episode")
        if ep == "written":
            obj["episode"] = target.written[0]
        elif ep == "second":
            obj["episode"] = target.written[-1]
        elif isinstance(ep, str):
            obj["episode"] = getattr(target, ep)
        return json.dumps(obj).encode()

    return make


def _raw(data: bytes) -> Callable[[Target, str], bytes]:
    return lambda target, robot: data.replace(b"ROBOT", robot.encode())


def _good_lines(kind: str, target: Target, robot: str) -> list[bytes]:
    half = target.frames / target.fps / 2
    if kind == "HL":
        return [
            _line(episode=e, start=0.0, end=half, subtask=f"reach {e}")(target, robot) for e in target.written
        ]
    return [_line(episode=e, time=0.0, instruction=f"go to {e}")(target, robot) for e in target.written]


def _hl(name: str, expect: Quarantined, make) -> Case:
    return Case(name, "HL", make, expect)


def _vi(name: str, expect: Quarantined, make) -> Case:
    return Case(name, "VI", make, expect)


CASES = [
    _hl(
        "hl_unknown_episode",
        Quarantined("unknown episode 999 of ", "episode"),
        _line(episode="unknown", start=0.0, end=0.1, subtask="reach"),
    ),
    _hl(
        "hl_span_outside",
        Quarantined(
            r"span \[0.1, 5.0\] s is outside episode \d+ \(0 to 0.200 s, 10 frames at 50 Hz\): spans counted in frames\?",
            "start",
        ),
        _line(episode="written", start=0.1, end=5.0, subtask="reach far"),
    ),
    _hl(
        "hl_overlap",
        Quarantined(r"overlaps the span of line 1 \(ends at 0.1 s\)", "start"),
        _line(episode="written", start=0.02, end=0.08, subtask="grasp"),
    ),
    _hl(
        "hl_not_utf8",
        Quarantined("not UTF-8"),
        _raw(b'{"dataset": "ROBOT", "episode": 0, "start": 0, "end": 0.1, "subtask": "gr\xffsp"}'),
    ),
    _hl(
        "hl_not_json",
        Quarantined("not a JSON object"),
        _raw(b'{"dataset": "ROBOT", "episode": 0, "start": 0,'),
    ),
    _hl(
        "hl_quarantined_episode",
        Quarantined(r"episode \d+ of \w+ was not written \(quarantined: ", "episode"),
        _line(episode="quarantined", start=0.0, end=0.1, subtask="reach"),
    ),
    _hl(
        "hl_missing_keys",
        Quarantined(r"missing \['start', 'end', 'subtask'\]"),
        _line(episode="written"),
    ),
    _hl(
        "hl_start_not_a_number",
        Quarantined("start is '0:01', not a number of seconds", "start"),
        _line(episode="second", start="0:01", end=0.1, subtask="reach"),
    ),
    _hl(
        "hl_other_dataset",
        Quarantined("points into dataset 'somewhere_else'", "dataset"),
        lambda target, robot: _line(episode="written", start=0.0, end=0.1, subtask="x")(
            target, "somewhere_else"
        ),
    ),
    _vi(
        "vi_time_outside",
        Quarantined(r"span \[5.0, 0.2\] s is outside episode", "start"),
        _line(episode="second", time=5.0, instruction="stop there"),
    ),
    _vi(
        "vi_unknown_episode",
        Quarantined("unknown episode 999 of ", "episode"),
        _line(episode="unknown", time=0.0, instruction="go"),
    ),
    _vi(
        "vi_time_not_a_number",
        Quarantined("time is None, not a number of seconds", "time"),
        _line(episode="written", time=None, instruction="go"),
    ),
    _vi(  # a VI line is nothing but its instruction (unlike an episode's empty task, which is data)
        "vi_empty_instruction",
        Quarantined("empty instruction", "instruction"),
        _line(episode="written", time=0.1, instruction="  "),
    ),
]


def _writer(kind: str):
    def write(
        root: Path, rel: str, cases: list[Case], goods: int, target: Target, robot: str
    ) -> dict[str, str]:
        lines = _good_lines(kind, target, robot)
        out = {f"good_{k}": f"{rel}:{k + 1}" for k in range(len(lines))}
        for case in cases:
            lines.append(case.make(target, robot))
            out[case.name] = f"{rel}:{len(lines)}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"\n".join(lines) + b"\n")
        return out

    return write


def _entry(kind: str):
    def entry(name: str, rel: str, robot: str) -> str:
        return f"{{name: {name}, kind: {kind}, format: annotations_jsonl, path: {rel}, dataset: {robot}}}"

    return entry


HL = Format("HL", _writer("HL"), _entry("HL"))
VI = Format("VI", _writer("VI"), _entry("VI"))
