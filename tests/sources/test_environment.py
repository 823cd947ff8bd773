"""The environment of every episode (docs/design.md §24): a constant, a field of the source (HDF5
attribute, LeRobot per-episode column or task, RLDS episode metadata) or a pattern over the file path,
checked when the sources file loads, at listing, and per episode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SAMPLES

from vlamix.config import ConfigError
from vlamix.schemas.quarantine import BadRecord
from vlamix.sources import aloha_hdf5, lerobot, rlds
from vlamix.sources.config import load_sources
from vlamix.sources.environment import EnvironmentField, environment_of
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.fields import FieldError
from vlamix.sources.synthetic.rlds_writer import RldsFeature, write_rlds


def _load(tmp_path, write_sources, entry: str):
    sources = load_sources(write_sources(tmp_path, f"datasets:\n  - {entry}\n"))
    return sources, sources.datasets[0]


def _environments(reader, sources, src) -> dict[str, str]:
    """source file -> the environment on its episode's first frame (and on every frame alike)."""
    out = {}
    for ref in reader.list_episodes(sources, src):
        rows = list(reader.read_episode(ref, src, sources.embodiment(src)))
        assert len({r["environment"] for r in rows}) == 1
        out[ref.source_file] = rows[0]["environment"]
    return out


def _ref(path: str) -> EpisodeRef:
    return EpisodeRef("d", 0, path, path.rsplit("/", 1)[-1])


def test_constant_and_path_patterns_name_the_episode():
    assert environment_of("  the   kitchen ", _ref("/data/x/ep_1.hdf5"), None) == "the kitchen"
    assert environment_of("{path.parent.name}", _ref("/data/site_a/ep_1.hdf5"), None) == "site_a"
    assert environment_of("lab_b/{path.stem}", _ref("/data/site_a/ep_1.hdf5"), None) == "lab_b/ep_1"
    assert environment_of("{path.parent.parent.name}", _ref("s3://bucket/homes/h7/ep.mcap"), None) == "homes"
    assert environment_of(None, _ref("/a/b.h5"), None) is None
    deep = "{path" + ".parent" * 8 + ".name}"  # past the root: an empty name is refused, never ""
    with pytest.raises(FieldError, match="is empty"):
        environment_of(deep, _ref("/a/b.h5"), None)


def test_a_field_must_hold_one_text():
    room = EnvironmentField("room")
    ref = _ref("/a/b.h5")
    assert environment_of(room, ref, {"room": b"kitchen"}.get) == "kitchen"
    assert environment_of(room, ref, {"room": np.array(["lab"] * 3)}.get) == "lab"  # one text per step
    with pytest.raises(FieldError, match="has no environment field 'room'"):
        environment_of(room, ref, {}.get)
    with pytest.raises(FieldError, match="int 3, not text"):
        environment_of(room, ref, {"room": 3}.get)  # never turned into text
    with pytest.raises(FieldError, match="2 different texts"):
        environment_of(room, ref, {"room": ["a", "b"]}.get)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('"{path.parent.size}"', "placeholder {path.parent.size} is not one of"),
        ('"{path.name"', "unbalanced brace"),
        ('""', "`environment:` is empty"),
        ("{field: ' '}", "names no field"),
        ("{feild: room}", "did you mean 'field'"),
    ],
)
def test_bad_settings_are_one_line_errors_at_load(tmp_path, write_sources, setting, message):
    with pytest.raises(ConfigError, match=r"sources.yaml: datasets\[0\] \(mm\)") as e:
        _load(
            tmp_path,
            write_sources,
            f"{{name: mm, kind: MM, format: aloha_hdf5, path: eps, embodiment: mobile_aloha, environment: {setting}}}",
        )
    assert message in str(e.value) and "\n" not in str(e.value)


def test_formats_without_a_per_episode_field_refuse_one(tmp_path, write_sources):
    with pytest.raises(ConfigError, match="format zarr has no per-episode field to read an environment from"):
        _load(
            tmp_path,
            write_sources,
            "{name: z, kind: CE, format: zarr, path: z.zarr, embodiment: aloha, keys: {state: s, action: a}, "
            "environment: {field: room}}",
        )


def test_hdf5_path_pattern_over_site_folders(tmp_path, write_sources, make_aloha_episode):
    make_aloha_episode(tmp_path / "homes/site_a/episode_0.hdf5", frames=6)
    make_aloha_episode(tmp_path / "homes/site_b/episode_1.hdf5", frames=6, seed=8)
    sources, src = _load(
        tmp_path,
        write_sources,
        "{name: mm, kind: MM, format: aloha_hdf5, path: 'homes/*/episode_*.hdf5', embodiment: mobile_aloha, "
        "task: tidy, environment: 'lab_b/{path.parent.name}'}",
    )
    assert _environments(aloha_hdf5, sources, src) == {
        "homes/site_a/episode_0.hdf5": "lab_b/site_a",
        "homes/site_b/episode_1.hdf5": "lab_b/site_b",
    }


def _room(value):
    def mutate(f) -> None:
        if value is not None:
            f.attrs["room"] = value

    return mutate


def test_hdf5_attribute_field(tmp_path, write_sources, make_aloha_episode):
    make_aloha_episode(tmp_path / "eps/episode_0.hdf5", frames=6, mutate=_room("kitchen"))
    make_aloha_episode(tmp_path / "eps/episode_1.hdf5", frames=6, seed=8, mutate=_room(b"garage"))
    entry = (
        "{name: mm, kind: MM, format: aloha_hdf5, path: eps, embodiment: mobile_aloha, task: tidy, "
        "environment: {field: room}}"
    )
    sources, src = _load(tmp_path, write_sources, entry)
    assert _environments(aloha_hdf5, sources, src) == {
        "eps/episode_0.hdf5": "kitchen",
        "eps/episode_1.hdf5": "garage",
    }
    # a later episode without the attribute, or with a number: that episode is quarantined, named
    make_aloha_episode(tmp_path / "eps/episode_2.hdf5", frames=6, seed=9, mutate=_room(None))
    make_aloha_episode(tmp_path / "eps/episode_3.hdf5", frames=6, seed=10, mutate=_room(7))
    refs = aloha_hdf5.list_episodes(sources, src)
    emb = sources.embodiment(src)
    for ref, reason in ((refs[2], "has no environment field 'room'"), (refs[3], "int 7, not text")):
        with pytest.raises(BadRecord) as e:
            list(aloha_hdf5.read_episode(ref, src, emb))
        q = e.value.record
        assert reason in q.reason and q.field == "room" and q.source_file == ref.source_file
    # the first episode without it: a configuration error at listing, naming the file
    (tmp_path / "eps/episode_0.hdf5").unlink()
    (tmp_path / "eps/episode_1.hdf5").unlink()
    with pytest.raises(
        ConfigError, match=r"eps/episode_2.hdf5 \(the first episode file.*no attribute or dataset 'room'"
    ):
        aloha_hdf5.list_episodes(sources, src)


def test_lerobot_per_episode_column_and_task(tmp_path, write_sources):
    spec = SAMPLES / "embodiments/sim_arm6_gr00t.yaml"
    base = (
        f"{{name: g, kind: ME, format: lerobot, path: '{SAMPLES / 'gr00t_sim'}', embodiment: '{spec}', "
        "keys: {state: [single_arm, gripper], action: [single_arm, gripper]}, environment: "
    )
    sources, src = _load(tmp_path, write_sources, base + "{field: room}}")
    found = _environments(lerobot, sources, src)
    assert list(found.values()) == ["living_room", "lab"]  # meta/episodes.jsonl's `room`, as generated
    sources, src = _load(tmp_path, write_sources, base + "{field: task}}")
    meta = [json.loads(line) for line in (SAMPLES / "gr00t_sim/meta/episodes.jsonl").read_text().splitlines()]
    assert list(_environments(lerobot, sources, src).values()) == [m["tasks"][0] for m in meta]
    sources, src = _load(tmp_path, write_sources, base + "{field: building}}")
    with pytest.raises(ConfigError, match="`environment` names 'building', which is neither a feature"):
        lerobot.list_episodes(sources, src)


RLDS_FEATURES = [
    RldsFeature("steps/observation/state", "Tensor", "float32", (7,)),
    RldsFeature("steps/action", "Tensor", "float32", (7,)),
    RldsFeature("steps/observation/image_0", "Image", shape=(8, 8, 3)),
    RldsFeature("steps/language_instruction", "Text"),
    RldsFeature("episode_metadata/room", "Text"),
]


def _rlds_episode(room: str, seed: int) -> dict:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(buf, "JPEG")
    rng = np.random.default_rng(seed)
    return {
        "steps/observation/state": rng.normal(size=(4, 7)).astype(np.float32),
        "steps/action": rng.normal(size=(4, 7)).astype(np.float32),
        "steps/observation/image_0": [buf.getvalue()] * 4,
        "steps/language_instruction": ["wipe"] * 4,
        "episode_metadata/room": room,
    }


def test_rlds_episode_metadata_feature(tmp_path, write_sources):
    write_rlds(
        tmp_path / "toy", "toy", RLDS_FEATURES, {"train": [_rlds_episode("kitchen", 0), _rlds_episode("", 1)]}
    )
    entry = "{name: toy, kind: CE, format: rlds, path: toy, embodiment: widowx_bridge, environment: {field: room}}"
    sources, src = _load(tmp_path, write_sources, entry)
    refs = rlds.list_episodes(sources, src)
    emb = sources.embodiment(src)
    assert {r["environment"] for r in rlds.read_episode(refs[0], src, emb)} == {"kitchen"}
    with pytest.raises(BadRecord) as e:  # an empty name: quarantined, naming the feature
        list(rlds.read_episode(refs[1], src, emb))
    assert e.value.record.field == "episode_metadata/room" and "is empty" in e.value.record.reason
    sources, src = _load(tmp_path, write_sources, entry.replace("room}", "site}"))
    with pytest.raises(ConfigError, match="environment field 'site' is no feature"):
        rlds.list_episodes(sources, src)
