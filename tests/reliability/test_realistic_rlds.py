"""Realistic RLDS variants (issue 18): small TFDS datasets written with the writer the bundled samples come
from (sources/synthetic/rlds_writer.py), read with `list_episodes` + `read_episode`; each test asserts
the output (task per frame, success, which cameras are kept, pixel colours, the error text)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import as_written, shared_path
from PIL import Image

from vlamix.config import ConfigError
from vlamix.schemas.quarantine import BadRecord
from vlamix.sources.config import load_sources
from vlamix.sources.rlds import list_episodes, read_episode
from vlamix.sources.synthetic.rlds_writer import RldsFeature, write_rlds
from vlamix.sources.tf_example import decode_example, encode_example
from vlamix.sources.tfrecord import read_record_at, write_records
from vlamix.transforms.image import decode_jpeg

T = 4
RED = (200, 30, 30)


def _jpeg(colour: tuple[int, int, int] | np.ndarray) -> bytes:
    pixels = colour if isinstance(colour, np.ndarray) else np.full((32, 32, 3), colour, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _features(*extra: RldsFeature) -> list[RldsFeature]:
    return [
        RldsFeature("steps/observation/state", "Tensor", "float32", (7,)),
        RldsFeature("steps/action", "Tensor", "float32", (7,)),
        RldsFeature("steps/observation/image_0", "Image", shape=(32, 32, 3)),
        RldsFeature("steps/language_instruction", "Text"),
        RldsFeature("steps/is_first", "Scalar", "bool"),
        *extra,
    ]


def _episode(**over) -> dict:
    ep = {
        "steps/observation/state": np.arange(T * 7, dtype=np.float32).reshape(T, 7) / 100,
        "steps/action": np.arange(T * 7, dtype=np.float32).reshape(T, 7) / 1000,
        "steps/observation/image_0": [_jpeg((90, 120, 60))] * T,
        "steps/language_instruction": ["put the spoon in the pot"] * T,
        "steps/is_first": np.array([1] + [0] * (T - 1)),
    }
    ep.update(over)
    return ep


def _sources(root: Path, entry: str = ""):
    (root / "sources.yaml").write_text(
        f"datasets:\n  - {{name: oxe, kind: CE, format: rlds, path: ds, embodiment: widowx_bridge{entry}}}\n"
    )
    sources = load_sources(root / "sources.yaml")
    return sources, sources.datasets[0]


def _read(root: Path, features: list[RldsFeature], episodes: list[dict], entry: str = "") -> list[list[dict]]:
    write_rlds(root / "ds", "ds", features, {"train": episodes})
    sources, src = _sources(root, entry)
    emb = sources.embodiment(src)
    return [as_written(read_episode(r, src, emb)) for r in list_episodes(sources, src)]


def _pixel(row: dict, slot: str = "base_0") -> tuple[int, ...]:
    return tuple(int(v) for v in decode_jpeg(row[f"image_{slot}"])[112, 112])


# 1. Per-step text.


def test_instruction_per_step_with_empty_and_changing_steps(tmp_path):
    given_late = ["", "pick up the spoon", "pick up the spoon", ""]
    changing = ["open the drawer", "", "close the drawer", ""]
    a, b = _read(
        tmp_path,
        _features(),
        [
            _episode(**{"steps/language_instruction": given_late}),
            _episode(**{"steps/language_instruction": changing}),
        ],
    )
    assert [r["task"] for r in a] == ["pick up the spoon"] * T  # one instruction, logged on some steps
    assert [r["task"] for r in b] == [
        "open the drawer",
        "open the drawer",
        "close the drawer",
        "close the drawer",
    ]


# 3. Success reduced over the steps.


def test_success_from_reward_and_is_terminal(tmp_path):
    features = _features(
        RldsFeature("steps/reward", "Scalar", "float32"), RldsFeature("steps/is_terminal", "Scalar", "bool")
    )
    done = _episode(**{"steps/reward": np.array([0, 0, 0, 1.0]), "steps/is_terminal": np.array([0, 0, 0, 1])})
    failed = _episode(**{"steps/reward": np.zeros(T), "steps/is_terminal": np.zeros(T, int)})
    rows = _read(tmp_path, features, [done, failed], ", success: reward")  # `steps/reward`, its last step
    assert [e[0]["success"] for e in rows] == [True, False]
    rows = _read(tmp_path, features, [done, failed], ", success: {field: steps/is_terminal}")
    assert [e[0]["success"] for e in rows] == [True, False]


def test_success_rules_first_and_any(tmp_path):
    features = _features(RldsFeature("steps/reward", "Scalar", "float32"))
    done = _episode(**{"steps/reward": np.array([0, 0, 0, 1.0])})
    rows = _read(tmp_path, features, [done], ", success: {field: steps/reward, reduce: first}")
    assert rows[0][0]["success"] is False
    rows = _read(tmp_path, features, [done], ", success: {field: reward, reduce: any}")
    assert rows[0][0]["success"] is True


# 4. Rate from the steps' timestamps.


def test_timestamps_at_another_rate_quarantine_the_episode(tmp_path):
    features = _features(RldsFeature("steps/observation/timestamp", "Scalar", "float64"))
    fast = _episode(**{"steps/observation/timestamp": np.arange(T) * 0.1})  # 10 Hz; widowx_bridge is 5 Hz
    with pytest.raises(BadRecord) as info:
        _read(tmp_path, features, [fast])
    rec = info.value.record
    assert rec.field == "steps/observation/timestamp"
    assert "is 10 Hz, the embodiment spec widowx_bridge says control_rate_hz 5" in rec.reason
    right = _episode(**{"steps/observation/timestamp": np.arange(T) * 0.2})
    (rows,) = _read(tmp_path, features, [right])
    assert len(rows) == T


# 5. Cameras.


def test_camera_absence_by_flag_or_missing_data_never_by_darkness(tmp_path):
    features = _features(
        RldsFeature("steps/observation/image_1", "Image", shape=(32, 32, 3)),
        RldsFeature("steps/observation/image_3", "Image", shape=(32, 32, 3)),
        RldsFeature("episode_metadata/has_image_1", "Scalar", "bool"),
        RldsFeature("episode_metadata/has_image_3", "Scalar", "bool"),
    )
    noise = np.random.default_rng(0).integers(0, 7, (32, 32, 3), dtype=np.uint8)  # a dark room, a real camera
    first = _episode(
        **{
            "steps/observation/image_0": [_jpeg(noise)] * T,
            "steps/observation/image_1": [_jpeg(RED)] * T,  # flagged absent, yet a picture: the flag is wrong
            "steps/observation/image_3": [_jpeg((0, 0, 0))] * T,  # flagged absent and a black fill
            "episode_metadata/has_image_1": False,
            "episode_metadata/has_image_3": False,
        }
    )
    second = _episode(
        **{
            "steps/observation/image_1": [b""] * T,  # every frame empty: missing data
            "steps/observation/image_3": [_jpeg((0, 0, 0))] * T,  # black, not flagged: a camera seeing black
            "episode_metadata/has_image_1": True,
            "episode_metadata/has_image_3": True,
        }
    )
    a, b = _read(tmp_path, features, [first, second])
    assert max(_pixel(a[0], "base_0")) < 20  # dark, kept
    assert _pixel(a[0], "base_1")[0] > 170
    assert a[0]["image_left_wrist"] is None
    assert b[0]["image_base_1"] is None
    assert _pixel(b[0], "left_wrist") == (0, 0, 0)


def test_a_camera_missing_from_the_record_is_absent(tmp_path):
    features = _features(RldsFeature("steps/observation/image_1", "Image", shape=(32, 32, 3)))
    write_rlds(tmp_path / "ds", "ds", features, {"train": []})
    flat = {k: ([v.encode() for v in x] if k.endswith("instruction") else x) for k, x in _episode().items()}
    record = encode_example({k: v if isinstance(v, list) else np.asarray(v).ravel() for k, v in flat.items()})
    write_records(tmp_path / "ds/ds-train.tfrecord-00000-of-00001", [record])  # no image_1 at all
    sources, src = _sources(tmp_path)
    (ref,) = list_episodes(sources, src)
    rows = as_written(read_episode(ref, src, sources.embodiment(src)))
    assert rows[0]["image_base_1"] is None and rows[0]["image_base_0"] is not None


def test_bgr_logged_camera_comes_out_rgb(tmp_path):
    (rows,) = _read(
        tmp_path,
        _features(),
        [_episode(**{"steps/observation/image_0": [_jpeg(RED[::-1])] * T})],
        ", keys: {cameras: {image_0: {slot: base_0, channel_order: bgr}}}",
    )
    r, g, b = _pixel(rows[0])
    assert r > 170 and g < 60 and b < 60


def test_two_cameras_on_one_slot_is_a_configuration_error(tmp_path):
    features = _features(RldsFeature("steps/observation/image_2", "Image", shape=(32, 32, 3)))
    ep = _episode(**{"steps/observation/image_2": [_jpeg(RED)] * T})
    with pytest.raises(
        ConfigError, match="ds/features.json: cameras 'image_0' and 'image_2' both map to slot 'base_0'"
    ):
        _read(tmp_path, features, [ep], ", keys: {cameras: {observation/image_2: base_0}}")


# 6. Keys in every form.


def test_keys_given_in_full_without_steps_or_by_last_part(tmp_path):
    features = [
        RldsFeature("steps/observation/proprio/joints", "Tensor", "float32", (7,)),
        RldsFeature("steps/action/deltas", "Tensor", "float32", (7,)),
        RldsFeature("steps/observation/agentview", "Image", shape=(32, 32, 3)),
        RldsFeature("steps/observation/natural_language_instruction", "Text"),
        RldsFeature("steps/is_first", "Scalar", "bool"),
    ]
    ep = _episode()
    ep = {
        "steps/observation/proprio/joints": ep["steps/observation/state"],
        "steps/action/deltas": ep["steps/action"],
        "steps/observation/agentview": [_jpeg(RED)] * T,
        "steps/observation/natural_language_instruction": ["stack the cups"] * T,
        "steps/is_first": ep["steps/is_first"],
    }
    keys = (
        ", keys: {state: joints, action: action/deltas, instruction: steps/observation/natural_language_instruction,"
        " cameras: {agentview: base_0}}"
    )
    (rows,) = _read(tmp_path, features, [ep], keys)
    np.testing.assert_array_equal(
        np.asarray(rows[2]["state"], np.float32), ep["steps/observation/proprio/joints"][2]
    )
    np.testing.assert_array_equal(np.asarray(rows[2]["action"], np.float32), ep["steps/action/deltas"][2])
    assert rows[0]["task"] == "stack the cups" and _pixel(rows[0])[0] > 170


def test_ambiguous_and_unknown_keys_name_the_candidates(tmp_path):
    features = _features(RldsFeature("episode_metadata/state", "Tensor", "float32", (7,)))
    ep = _episode(**{"episode_metadata/state": np.zeros(7, np.float32)})
    with pytest.raises(ConfigError) as info:
        _read(tmp_path, features, [ep], ", keys: {state: state}")
    assert "state key 'state' is ambiguous" in str(info.value)
    assert "['episode_metadata/state', 'steps/observation/state']" in str(info.value)
    with pytest.raises(ConfigError) as info:
        _read(tmp_path, features, [ep], ", keys: {instruction: lang}")
    assert (
        "instruction key 'lang' is no feature; the features are ['episode_metadata/state', 'steps/action',"
        in str(info.value)
    )


# 7. State and action are numbers.


def test_bool_state_feature_is_refused_at_listing(tmp_path):
    features = [
        RldsFeature("steps/observation/state", "Tensor", "bool", (7,)) if f.name.endswith("state") else f
        for f in _features()
    ]
    ep = _episode(**{"steps/observation/state": np.ones((T, 7), bool)})
    with pytest.raises(
        ConfigError, match="state feature steps/observation/state is Tensor of bool, not numbers"
    ):
        _read(tmp_path, features, [ep])


# 8. No task.


def test_no_instruction_feature_and_no_task(tmp_path):
    features = [f for f in _features() if f.kind != "Text"]
    ep = {k: v for k, v in _episode().items() if k != "steps/language_instruction"}
    with pytest.raises(ConfigError, match="no task for these episodes"):
        _read(tmp_path, features, [ep])
    (rows,) = _read(tmp_path, features, [ep], ", task: wipe the table")
    assert {r["task"] for r in rows} == {"wipe the table"}


# The real BridgeData V2 debug episodes.


def test_real_bridge_keys_by_last_part_ids_by_position_and_flags_not_trusted(tmp_path):
    folder = shared_path("data", "bridge_v2_debug")
    (tmp_path / "sources.yaml").write_text(
        f"datasets:\n  - {{name: bridge, kind: CE, format: rlds, path: {folder}, embodiment: widowx_bridge,"
        " success: is_terminal, keys: {state: state, action: action, instruction: language_instruction}}\n"
    )
    sources = load_sources(tmp_path / "sources.yaml")
    src = sources.datasets[0]
    refs = list_episodes(sources, src)
    # episode_metadata/episode_id repeats (0..7, per original file): ids are record positions
    assert [r.index for r in refs] == list(range(50))
    raw = decode_example(read_record_at(refs[1].path, refs[1].offset))
    assert not raw["episode_metadata/has_image_0"][0]  # flagged absent ...
    rows = as_written(read_episode(refs[1], src, sources.embodiment(src)))
    assert rows[0]["key"] == "bridge/000001/000000"
    assert rows[0]["image_base_0"] is not None and rows[0]["image_base_1"] is not None  # ... yet real: kept
    assert rows[0]["image_left_wrist"] is None  # flagged absent and black: masked
    assert rows[0]["task"] == raw["steps/language_instruction"][0].decode()
    assert rows[0]["success"] is False  # is_terminal is 0 on every step of these debug episodes


# 2. Identity: an episode id feature, named in the sources file.


def _with_ids(ids: list) -> list[dict]:
    return [
        _episode(
            **{
                "episode_metadata/episode_id": np.array([i], np.int64),
                "steps/action": np.full((T, 7), k / 100, np.float32),
            }
        )
        for k, i in enumerate(ids)
    ]


ID_FEATURE = RldsFeature("episode_metadata/episode_id", "Scalar", "int64")


def test_episode_id_feature_gives_each_episode_its_own_id(tmp_path):
    """Episodes 0, 2, 3 (episode 1 deleted): with `keys: {episode_id: episode_id}` the frames carry 0, 2
    and 3, each with its own data; without it, positions 0, 1, 2."""
    episodes = _read(
        tmp_path, _features(ID_FEATURE), _with_ids([0, 2, 3]), ", keys: {episode_id: episode_id}"
    )
    assert [ep[0]["episode"] for ep in episodes] == [0, 2, 3]
    assert [round(ep[0]["action"][0], 2) for ep in episodes] == [0.0, 0.01, 0.02]
    assert episodes[1][0]["key"] == "oxe/000002/000000"
    sources, src = _sources(tmp_path)
    assert [r.index for r in list_episodes(sources, src)] == [0, 1, 2]


def test_an_episode_id_that_repeats_is_a_config_error(tmp_path):
    write_rlds(tmp_path / "ds", "ds", _features(ID_FEATURE), {"train": _with_ids([0, 1, 1])})
    sources, src = _sources(tmp_path, ", keys: {episode_id: episode_metadata/episode_id}")
    with pytest.raises(ConfigError, match="share episode_metadata/episode_id 1"):
        list_episodes(sources, src)


def test_episode_id_is_only_for_rlds(tmp_path):
    (tmp_path / "sources.yaml").write_text(
        "datasets:\n  - {name: a, kind: MM, format: aloha_hdf5, path: x, embodiment: aloha, task: t, "
        "keys: {episode_id: id}}\n"
    )
    with pytest.raises(ConfigError, match="episode_id is for rlds"):
        load_sources(tmp_path / "sources.yaml")
