"""Every bundled robot episode knows where it was recorded (docs/design.md §24): the environment rides on
frames, samples (meta.json) and index rows, HL / VI samples inherit their robot episode's, and the
manifest and the dataset card list each dataset's environments with episode counts. The bundled sources
use all three forms: a constant, a LeRobot per-episode field (the ME rooms) and a path pattern (ros2_sim)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import SAMPLES, first_sample

from vlamix.shards.workdir import WorkDir

pytestmark = pytest.mark.slow

ROBOT = ("MM", "ME", "CE")


def _index(layout, name: str) -> dict[int, set]:
    """episode -> the environments its index rows carry."""
    t = pq.read_table(layout / f"index/{name}.parquet", columns=["episode", "environment"]).to_pydict()
    out: dict[int, set] = {}
    for episode, env in zip(t["episode"], t["environment"], strict=True):
        out.setdefault(episode, set()).add(env)
    return out


def _meta_rooms(folder: str) -> dict[int, str]:
    """episode_index -> room, read straight from the LeRobot metadata the generator wrote."""
    meta = SAMPLES / folder / "meta"
    if (meta / "episodes.jsonl").is_file():
        rows = [json.loads(line) for line in (meta / "episodes.jsonl").read_text().splitlines()]
    else:
        rows = pq.read_table(next((meta / "episodes").rglob("*.parquet"))).to_pylist()
    return {r["episode_index"]: r["room"] for r in rows}


def test_every_robot_episode_has_its_environment(bundled):
    manifest = json.loads((bundled / "manifest.json").read_text())["datasets"]
    entries = {e["name"]: e for e in yaml.safe_load((SAMPLES / "sources.yaml").read_text())["datasets"]}
    forms = set()
    for name, d in manifest.items():
        if d["kind"] == "WD":
            assert "environments" not in d, name  # web data was recorded nowhere
        if d["kind"] not in ROBOT:
            continue
        setting = entries[name]["environment"]  # every bundled robot dataset names one
        by_episode = _index(bundled, name)
        assert all(len(envs) == 1 and None not in envs for envs in by_episode.values()), name
        episodes = {ep: envs.pop() for ep, envs in by_episode.items()}
        # the manifest counts each environment's written episodes
        counts: dict[str, int] = {}
        for env in episodes.values():
            counts[env] = counts.get(env, 0) + 1
        assert d["environments"] == dict(sorted(counts.items())), name
        assert sum(counts.values()) == d["accounting"]["written"], name
        if isinstance(setting, dict):
            forms.add("field")
            assert setting == {"field": "room"}
            folder = entries[name]["path"]
            assert episodes == _meta_rooms(folder), name  # each episode its own room
        elif "{" in setting:
            forms.add("pattern")
            assert set(episodes.values()) == {entries[name]["path"]}, name  # {path.parent.name}
        else:
            forms.add("constant")
            assert set(episodes.values()) == {setting}, name
    assert forms == {"constant", "field", "pattern"}
    rooms = {env for n, d in manifest.items() if d["kind"] == "ME" for env in d["environments"]}
    assert rooms == {"kitchen", "workshop", "living_room", "lab"}  # the four rooms the ME samples render


def test_frames_samples_and_annotations_carry_it(bundled):
    manifest = json.loads((bundled / "manifest.json").read_text())["datasets"]
    frames = pq.read_table(bundled / WorkDir.frames("lerobot_v30_sim", 2), columns=["environment"])
    assert set(frames.column("environment").to_pylist()) == {_meta_rooms("lerobot_v30")[2]}
    meta = json.loads(first_sample(bundled, "lerobot_v21_sim")["meta.json"])
    episode = int(meta["key"].split("/")[1])
    assert meta["environment"] == _meta_rooms("lerobot_v21")[episode]
    assert json.loads(first_sample(bundled, "web_coco")["meta.json"])["environment"] is None
    for name in ("me_subtasks", "mm_subtasks", "mm_verbal"):  # HL / VI: the annotated episode's room
        robot = manifest[name]["annotates"]
        mine, theirs = _index(bundled, name), _index(bundled, robot)
        assert mine and all(envs == theirs[ep] for ep, envs in mine.items()), name
        assert set(manifest[name]["environments"]) <= set(manifest[robot]["environments"])
    card = (bundled / "README.md").read_text()
    assert "### Environments" in card
    assert "- `lerobot_v21_sim`: kitchen (1 episode), living_room (1 episode), workshop (1 episode)" in card
