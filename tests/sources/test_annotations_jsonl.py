from __future__ import annotations

import json

import pytest
from conftest import SAMPLES

from vlamix.config import ConfigError
from vlamix.sources.annotations_jsonl import EpisodeInfo, read_spans
from vlamix.sources.config import load_sources
from vlamix.sources.synthetic.annotation_samples import generate_annotations

EPISODES = {
    0: EpisodeInfo(100, 10.0, "written"),
    1: EpisodeInfo(50, 10.0, "written"),
    2: EpisodeInfo(40, 10.0, "quarantined: NaN"),
}


def _sources(tmp_path, write_sources, kind: str, lines: list):
    (tmp_path / "ann.jsonl").write_bytes(
        b"\n".join(x if isinstance(x, bytes) else json.dumps(x).encode() for x in lines) + b"\n"
    )
    (tmp_path / "eps").mkdir(exist_ok=True)
    return load_sources(
        write_sources(
            tmp_path,
            f"""
            datasets:
              - {{name: robot, kind: MM, format: aloha_hdf5, path: eps, embodiment: mobile_aloha}}
              - {{name: ann, kind: {kind}, format: annotations_jsonl, path: ann.jsonl, dataset: robot}}
            """,
        )
    )


def _hl(episode, start, end, text="wipe", dataset="robot"):
    return {"dataset": dataset, "episode": episode, "start": start, "end": end, "subtask": text}


def test_hl_spans_become_frame_ranges_and_bad_lines_are_quarantined(tmp_path, write_sources):
    lines = [
        _hl(0, 0.0, 2.5, "pick up the cup"),
        _hl(0, 2.0, 4.0, "overlapping"),  # overlaps the first
        _hl(0, 2.5, 10.0, "put it  down"),
        _hl(1, 4.0, 6.0),  # ends past the 5 s episode
        _hl(7, 0.0, 1.0),  # unknown episode
        _hl(2, 0.0, 1.0),  # episode was quarantined
        _hl(0, 0.0, 1.0, dataset="other"),
        {"dataset": "robot", "episode": 1, "start": 0.0},  # missing keys
        b"{not json",
        b'{"subtask": "\xff\xfe"}',
    ]
    sources = _sources(tmp_path, write_sources, "HL", lines)
    spans, bad, read = read_spans(sources, sources.annotations[0], EPISODES)
    assert read == 10
    assert [(s.episode, s.start, s.end, s.text, s.line) for s in spans] == [
        (0, 0, 25, "pick up the cup", 1),
        (0, 25, 100, "put it down", 3),
    ]
    reasons = {int(q.source_file.rsplit(":", 1)[1]): q.reason for q in bad}
    assert sorted(reasons) == [2, 4, 5, 6, 7, 8, 9, 10]
    assert "overlaps the span of line 1" in reasons[2]
    assert "outside episode 1" in reasons[4]
    assert "unknown episode 7" in reasons[5]
    assert "was not written (quarantined: NaN)" in reasons[6]
    assert "points into dataset 'other'" in reasons[7]
    assert "missing" in reasons[8] and "not a JSON object" in reasons[9] and "not UTF-8" in reasons[10]


def test_vi_instruction_holds_until_the_next_one(tmp_path, write_sources):
    lines = [
        {"dataset": "robot", "episode": 0, "time": 3.0, "instruction": "now the lid"},
        {"dataset": "robot", "episode": 0, "time": 0.0, "instruction": "open the drawer"},
        {"dataset": "robot", "episode": 1, "time": 1.0, "instruction": "stop"},
    ]
    sources = _sources(tmp_path, write_sources, "VI", lines)
    spans, bad, _ = read_spans(sources, sources.annotations[0], EPISODES)
    assert not bad
    assert [(s.episode, s.start, s.end, s.text) for s in spans] == [
        (0, 0, 30, "open the drawer"),
        (0, 30, 100, "now the lid"),
        (1, 10, 50, "stop"),
    ]


def test_annotation_must_point_at_a_robot_dataset(tmp_path, write_sources):
    (tmp_path / "eps").mkdir()
    path = write_sources(
        tmp_path,
        """
        datasets:
          - {name: robot, kind: MM, format: aloha_hdf5, path: eps, embodiment: mobile_aloha}
          - {name: ann, kind: HL, format: annotations_jsonl, path: a.jsonl, dataset: robt}
        """,
    )
    with pytest.raises(ConfigError, match="points into 'robt'.*did you mean 'robot'"):
        load_sources(path)


def test_bundled_annotations_regenerate_identically(tmp_path):
    import shutil

    for name in ("mobile_aloha", "lerobot_v21"):
        shutil.copytree(SAMPLES / name, tmp_path / name)
    for path in generate_annotations(tmp_path):
        assert path.read_text() == (SAMPLES / "annotations" / path.name).read_text()
