from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import as_written, shared_path
from PIL import Image

from vlamix.config import ConfigError
from vlamix.pipelines.ingest import IngestOptions, run_ingest
from vlamix.schemas.frame import FRAME
from vlamix.schemas.quarantine import BadRecord
from vlamix.shards.workdir import WorkDir
from vlamix.sources.config import load_sources
from vlamix.sources.rlds import list_episodes, read_episode
from vlamix.sources.synthetic.rlds_writer import RldsFeature, write_rlds
from vlamix.sources.tf_example import decode_example, encode_example
from vlamix.sources.tfrecord import TFRecordError, read_record_at, scan_records, write_records
from vlamix.transforms.image import decode_jpeg

FEATURES = [
    RldsFeature("steps/observation/state", "Tensor", "float32", (7,)),
    RldsFeature("steps/action", "Tensor", "float32", (7,)),
    RldsFeature("steps/observation/image_0", "Image", shape=(32, 32, 3)),
    RldsFeature("steps/observation/image_3", "Image", shape=(32, 32, 3)),
    RldsFeature("steps/language_instruction", "Text"),
    RldsFeature("steps/is_first", "Scalar", "bool"),
    RldsFeature("episode_metadata/has_image_3", "Scalar", "bool"),
]


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _episode(t: int = 5, seed: int = 0, **over) -> dict:
    rng = np.random.default_rng(seed)
    ep = {
        "steps/observation/state": rng.normal(size=(t, 7)).astype(np.float32),
        "steps/action": rng.normal(size=(t, 7)).astype(np.float32),
        "steps/observation/image_0": [_jpeg(60 + 10 * i) for i in range(t)],
        "steps/observation/image_3": [_jpeg(0)] * t,  # an absent wrist camera: black frames ...
        "steps/language_instruction": ["put the spoon in the pot"] * t,
        "steps/is_first": np.array([1] + [0] * (t - 1)),
        "episode_metadata/has_image_3": False,  # ... and flagged absent, as BridgeData flags it
    }
    ep.update(over)
    return ep


def _read_all(tmp_path, write_sources, features=FEATURES, splits=None, keys: str = ""):
    write_rlds(tmp_path / "toy", "toy", features, splits or {"train": [_episode()]})
    sources = load_sources(
        write_sources(
            tmp_path,
            f"datasets:\n  - {{name: toy, kind: CE, format: rlds, path: toy, embodiment: widowx_bridge{keys}}}\n",
        )
    )
    src = sources.datasets[0]
    return [as_written(read_episode(r, src, sources.embodiment(src))) for r in list_episodes(sources, src)]


def test_tfrecord_round_trip_and_corruption(tmp_path):
    path = tmp_path / "x.tfrecord"
    write_records(path, [b"alpha", b"", b"gamma" * 100])
    recs = list(scan_records(path))
    assert [r[2] for r in recs] == [5, 0, 500]
    assert read_record_at(path, recs[2][1], 2) == b"gamma" * 100
    data = bytearray(path.read_bytes())
    data[recs[2][1] + 12 + 7] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TFRecordError, match="record 2 at byte .*: data checksum mismatch"):
        read_record_at(path, recs[2][1], 2)
    path.write_bytes(bytes(data[:-10]))
    with pytest.raises(TFRecordError, match="record 2 .* truncated data"):
        list(scan_records(path))


def test_example_round_trip():
    feats = {"a": [b"x", b""], "b": np.array([1.5, -2.0], np.float32), "c": np.array([3, -4])}
    back = decode_example(encode_example(feats))
    assert back["a"] == [b"x", b""]
    np.testing.assert_array_equal(back["b"], feats["b"])
    np.testing.assert_array_equal(back["c"], feats["c"])


def test_reads_values_images_instruction_and_split(tmp_path, write_sources):
    ep = _episode()
    (rows,) = _read_all(tmp_path, write_sources, splits={"val": [ep]})
    FRAME.table(rows)
    np.testing.assert_array_equal(np.asarray(rows[2]["action"], np.float32), ep["steps/action"][2])
    np.testing.assert_array_equal(np.asarray(rows[2]["state"], np.float32), ep["steps/observation/state"][2])
    assert rows[0]["task"] == "put the spoon in the pot" and rows[0]["split"] == "val"
    assert abs(decode_jpeg(rows[3]["image_base_0"])[112, 112].mean() - 90) < 4
    assert rows[0]["image_left_wrist"] is None  # flagged absent, black fill: a masked slot, not an error
    assert rows[0]["timestamp"] == 0 and rows[1]["timestamp"] == pytest.approx(0.2)


def test_empty_instruction_needs_a_task_or_the_has_language_flag(tmp_path, write_sources):
    silent = _episode(**{"steps/language_instruction": [""] * 5})
    with pytest.raises(
        BadRecord, match="no task: steps/language_instruction is empty on every step .* set `task:`"
    ):
        _read_all(tmp_path, write_sources, splits={"train": [silent]})
    (rows,) = _read_all(tmp_path, write_sources, splits={"train": [silent]}, keys=", task: wipe the table")
    assert {r["task"] for r in rows} == {"wipe the table"}
    features = [*FEATURES, RldsFeature("episode_metadata/has_language", "Scalar", "bool")]
    declared = {**silent, "episode_metadata/has_language": False}  # BridgeData's own flag: data
    (rows,) = _read_all(tmp_path, write_sources, features=features, splits={"train": [declared]})
    assert {r["task"] for r in rows} == {None}


@pytest.mark.parametrize(
    "over, match, field, frame",
    [
        ({"steps/action": np.full((5, 7), np.nan, np.float32)}, "non-finite", "action", 0),
        ({"steps/action": np.zeros((5, 6), np.float32)}, "action has 6 columns", "action", None),
        (
            {
                "steps/language_instruction": ["ok", b"\xff\xfe bad".decode("latin-1").encode("latin-1")] * 2
                + ["x"]
            },
            "not UTF-8",
            "steps/language_instruction",
            1,
        ),
        (
            {"steps/observation/image_0": [b"\xff\xd8 not a jpeg"] * 5},
            "image does not decode",
            "steps/observation/image_0",
            0,
        ),
    ],
)
def test_bad_episodes_name_file_episode_and_field(tmp_path, write_sources, over, match, field, frame):
    features = FEATURES
    if "steps/action" in over and over["steps/action"].shape[1] == 6:
        features = [
            RldsFeature("steps/action", "Tensor", "float32", (6,)) if f.name == "steps/action" else f
            for f in FEATURES
        ]
    with pytest.raises(BadRecord, match=match) as info:
        _read_all(tmp_path, write_sources, features=features, splits={"train": [_episode(**over)]})
    rec = info.value.record
    assert (rec.source_file, rec.episode, rec.field, rec.frame) == (
        "toy/toy-train.tfrecord-00000-of-00001",
        0,
        field,
        frame,
    )


def test_unknown_camera_is_an_error_and_null_drops_it(tmp_path, write_sources):
    features = [*FEATURES, RldsFeature("steps/observation/top_cam", "Image", shape=(32, 32, 3))]
    ep = _episode(**{"steps/observation/top_cam": [_jpeg(50)] * 5})
    with pytest.raises(ConfigError, match="toy/features.json: unknown camera 'top_cam'.*known camera names"):
        _read_all(tmp_path, write_sources, features=features, splits={"train": [ep]})  # at listing
    (rows,) = _read_all(
        tmp_path,
        write_sources,
        features=features,
        splits={"train": [ep]},
        keys=", keys: {cameras: {top_cam: null}}",
    )
    assert rows[0]["image_base_0"] is not None


def test_keys_map_other_feature_names(tmp_path, write_sources):
    features = [
        RldsFeature("steps/observation/joints", "Tensor", "float32", (7,))
        if f.name == "steps/observation/state"
        else f
        for f in FEATURES
    ]
    ep = _episode()
    ep["steps/observation/joints"] = ep.pop("steps/observation/state")
    with pytest.raises(
        ConfigError, match="state key 'steps/observation/state' is no feature.*joints.*set `keys: {state"
    ):
        _read_all(tmp_path, write_sources, features=features, splits={"train": [ep]})  # at listing
    (rows,) = _read_all(
        tmp_path,
        write_sources,
        features=features,
        splits={"train": [ep]},
        keys=", keys: {state: steps/observation/joints}",
    )
    np.testing.assert_array_equal(np.asarray(rows[0]["state"], np.float32), ep["steps/observation/joints"][0])


def test_real_bridge_debug_values_images_and_duplicates(tmp_path, write_sources):
    folder = shared_path("data", "bridge_v2_debug")
    sources = load_sources(
        write_sources(
            tmp_path,
            f"datasets:\n  - {{name: bridge, kind: CE, format: rlds, path: {folder}, embodiment: widowx_bridge}}\n",
        )
    )
    src = sources.datasets[0]
    refs = list_episodes(sources, src)
    assert len(refs) == 50 and {r.split for r in refs} == {"train", "val"}
    rows = as_written(read_episode(refs[0], src, sources.embodiment(src)))
    raw = decode_example(read_record_at(refs[0].path, refs[0].offset))
    np.testing.assert_array_equal(
        np.asarray(rows[3]["action"], np.float32), raw["steps/action"].reshape(-1, 7)[3]
    )
    assert rows[0]["task"] == raw["steps/language_instruction"][0].decode()
    assert rows[0]["image_base_0"] is not None and rows[0]["image_base_1"] is not None
    assert rows[0]["image_left_wrist"] is None  # image_3 is all black in these episodes
    out = tmp_path / "out"
    manifest = run_ingest(IngestOptions(sources.path, out, samples_per_shard=100))
    acc = manifest["datasets"]["bridge"]["accounting"]
    assert (acc["read"], acc["written"], acc["duplicates"], acc["quarantined"]) == (50, 25, 25, 0)
    assert acc["frames_duplicates"] == acc["frames_written"] == 250
    splits = {
        json.loads(line)["split"]
        for line in (out / WorkDir.outcomes("extracted", "bridge")).read_text().splitlines()
    }
    assert splits == {"train", "val"}


def test_truncated_file_keeps_earlier_episodes_and_quarantines_the_tail(tmp_path, write_sources):
    (path,) = write_rlds(tmp_path / "toy", "toy", FEATURES, {"train": [_episode(seed=1), _episode(seed=2)]})
    path.write_bytes(path.read_bytes()[:-100])
    sources = load_sources(
        write_sources(
            tmp_path,
            "datasets:\n  - {name: toy, kind: CE, format: rlds, path: toy, embodiment: widowx_bridge}\n",
        )
    )
    src = sources.datasets[0]
    good, broken = list_episodes(sources, src)
    assert len(as_written(read_episode(good, src, sources.embodiment(src)))) == 5
    with pytest.raises(BadRecord, match="record 1 at byte .*truncated data"):
        as_written(read_episode(broken, src, sources.embodiment(src)))
