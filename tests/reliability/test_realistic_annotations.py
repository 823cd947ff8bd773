"""Realistic annotation files (issue 18, classes 2 and 10): episodes addressed by the source's own id
(gaps in the numbering never shift a span onto a neighbour; file stems address episodes whose names
carry no number), spans counted in frames when the file says so, and spans that end past the episode
refused in either unit."""

from __future__ import annotations

import json

import pytest

from vlamix.sources.annotations_jsonl import EpisodeInfo, read_spans
from vlamix.sources.config import load_sources

FPS = 10.0


def _read(tmp_path, kind: str, lines: list[dict], episodes: dict[int, EpisodeInfo], units: str | None = None):
    (tmp_path / "ann.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    extra = f", units: {units}" if units else ""
    (tmp_path / "sources.yaml").write_text(
        "datasets:\n"
        "  - {name: robot, kind: MM, format: aloha_hdf5, path: eps, embodiment: mobile_aloha, task: t}\n"
        f"  - {{name: ann, kind: {kind}, format: annotations_jsonl, path: ann.jsonl, dataset: robot{extra}}}\n"
    )
    sources = load_sources(tmp_path / "sources.yaml")
    return read_spans(sources, sources.annotations[0], episodes)


def _info(frames: int = 50, *names: str) -> EpisodeInfo:
    return EpisodeInfo(frames, FPS, "written", names)


def _hl(episode, start, end, text="grasp"):
    return {"dataset": "robot", "episode": episode, "start": start, "end": end, "subtask": text}


def test_a_deleted_demo_never_shifts_spans_onto_its_neighbour(tmp_path):
    """LeRobot episode_index 0, 2, 3 (episode 1 deleted): a span for episode 2 lands on episode 2."""
    episodes = {0: _info(), 2: _info(), 3: _info()}
    spans, bad, read = _read(tmp_path, "HL", [_hl(2, 0.0, 1.0, "two"), _hl(3, 0.0, 1.0, "three")], episodes)
    assert {s.episode: s.text for s in spans} == {2: "two", 3: "three"}
    assert not bad and read == 2


def test_the_deleted_episode_itself_is_unknown(tmp_path):
    spans, bad, _ = _read(tmp_path, "HL", [_hl(1, 0.0, 1.0)], {0: _info(), 2: _info()})
    assert not spans
    assert "unknown episode 1" in bad[0].reason and "own id" in bad[0].reason


def test_episodes_are_addressed_by_file_stem(tmp_path):
    """ALOHA files named without a number (demo_red.hdf5) are addressed by their stem."""
    episodes = {0: _info(50, "demo_red"), 1: _info(50, "demo_blue")}
    spans, bad, _ = _read(tmp_path, "HL", [_hl("demo_blue", 0.0, 2.0, "blue")], episodes)
    assert [(s.episode, s.start, s.end, s.text) for s in spans] == [(1, 0, 20, "blue")]
    assert not bad


def test_an_id_written_as_text_is_the_same_episode(tmp_path):
    spans, bad, _ = _read(tmp_path, "HL", [_hl("3", 0.0, 1.0)], {3: _info()})
    assert [s.episode for s in spans] == [3] and not bad


def test_true_is_not_episode_one(tmp_path):
    spans, bad, _ = _read(tmp_path, "HL", [_hl(True, 0.0, 1.0)], {1: _info()})
    assert not spans and bad[0].field == "episode"


def test_spans_in_frames_when_the_sources_entry_says_so(tmp_path):
    spans, bad, _ = _read(tmp_path, "HL", [_hl(0, 10, 25), _hl(0, 25, 50, "place")], {0: _info()}, "frames")
    assert [(s.start, s.end, s.text) for s in spans] == [(10, 25, "grasp"), (25, 50, "place")]
    assert not bad


def test_a_line_may_declare_its_own_units(tmp_path):
    line = {**_hl(0, 5, 15), "units": "frames"}
    spans, bad, _ = _read(tmp_path, "HL", [line, _hl(0, 2.0, 3.0, "later")], {0: _info()})
    assert [(s.start, s.end) for s in spans] == [(5, 15), (20, 30)] and not bad


def test_frame_spans_read_as_seconds_are_refused_with_a_hint(tmp_path):
    """An HL file written in frames but read as seconds: [10, 80] is past a 5 s episode."""
    spans, bad, _ = _read(tmp_path, "HL", [_hl(0, 10, 80)], {0: _info(50)})
    assert not spans
    assert "outside episode 0" in bad[0].reason and "units: frames" in bad[0].reason


def test_a_span_past_the_end_is_refused_in_frames_too(tmp_path):
    spans, bad, _ = _read(tmp_path, "HL", [_hl(0, 40, 51)], {0: _info(50)}, "frames")
    assert not spans and "outside episode 0" in bad[0].reason


def test_fractional_frame_numbers_are_refused(tmp_path):
    spans, bad, _ = _read(tmp_path, "HL", [_hl(0, 1.5, 4)], {0: _info()}, "frames")
    assert not spans and "frame number" in bad[0].reason and bad[0].field == "start"


def test_verbal_instructions_in_frames_hold_until_the_next(tmp_path):
    lines = [
        {"dataset": "robot", "episode": 0, "time": 0, "instruction": "pick it up"},
        {"dataset": "robot", "episode": 0, "time": 30, "instruction": "now put it down"},
    ]
    spans, bad, _ = _read(tmp_path, "VI", lines, {0: _info(50)}, "frames")
    assert [(s.start, s.end, s.text) for s in spans] == [(0, 30, "pick it up"), (30, 50, "now put it down")]
    assert not bad


def test_unknown_units_are_refused(tmp_path):
    spans, bad, _ = _read(tmp_path, "HL", [{**_hl(0, 0, 1), "units": "ms"}], {0: _info()})
    assert not spans and bad[0].field == "units"


def test_units_in_the_sources_entry_are_validated(tmp_path):
    from vlamix.config import ConfigError

    with pytest.raises(ConfigError, match="units"):
        _read(tmp_path, "HL", [], {}, "minutes")
