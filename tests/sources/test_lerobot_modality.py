"""LeRobot with NVIDIA GR00T's `meta/modality.json` (issue 24, part 4): `keys` may name its state and
action parts (read as their [start, end), in the order given), its video names are camera names, an
annotation can give the instruction, and the dims are named after the parts for the spec to match.
The bundled sample samples/gr00t_sim (sources/synthetic/gr00t_samples.py) names its dims only
motor_0..6 in info.json; its spec samples/embodiments/sim_arm6_gr00t.yaml names them by part."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLES, ingest_cli
from servers import http_server

from vlamix.config import ConfigError
from vlamix.schemas.quarantine import BadRecord
from vlamix.sources.config import load_sources
from vlamix.sources.lerobot import _info, list_episodes, read_episode
from vlamix.sources.lerobot_modality import parse_modality, read_modality
from vlamix.sources.lerobot_plan import plan_dataset
from vlamix.sources.synthetic.gr00t_samples import MODALITY, generate_gr00t

SAMPLE = SAMPLES / "gr00t_sim"
SPEC = SAMPLES / "embodiments/sim_arm6_gr00t.yaml"
PARQUET = "data/chunk-000/episode_000000.parquet"
ARM = [f"single_arm_{k}" for k in range(6)]


def _spec(
    tmp_path, state: list[str], action: list[str], cameras: str = "{ego_view: base_0, wrist: left_wrist}"
) -> str:
    """An embodiment spec YAML with these dim names (joints, `gripper` a gripper)."""

    def dims(names: list[str]) -> str:
        kind = lambda n: "gripper, unit: normalized" if n == "gripper" else "joint_position, unit: rad"  # noqa: E731
        return "".join(f"  - {{name: {n}, kind: {kind(n)}}}\n" for n in names)

    path = tmp_path / "spec.yaml"
    path.write_text(
        "name: spec\ndescription: test\ncontrol_rate_hz: 30\ncontrol_mode: joint\n"
        f"gripper: {{open: 1.0, closed: 0.0}}\nstate:\n{dims(state)}action:\n{dims(action)}cameras: {cameras}\n"
    )
    return str(path)


def _load(tmp_path, path=SAMPLE, keys: str = "", spec=SPEC):
    _info.cache_clear()
    read_modality.cache_clear()
    (tmp_path / "sources.yaml").write_text(
        f"datasets:\n  - {{name: g, kind: ME, format: lerobot, path: '{path}', embodiment: '{spec}'"
        + (f", keys: {keys}" if keys else "")
        + "}\n"
    )
    sources = load_sources(tmp_path / "sources.yaml")
    src = sources.datasets[0]
    return src, sources.embodiment(src), list_episodes(sources, src)


def _copy(tmp_path, modality: dict | None = None):
    shutil.copytree(SAMPLE, tmp_path / "ds")
    if modality is not None:
        (tmp_path / "ds/meta/modality.json").write_text(json.dumps(modality))
    return tmp_path / "ds"


def _column(name: str) -> np.ndarray:
    return np.asarray(pq.read_table(SAMPLE / PARQUET).column(name).to_pylist(), np.float32)


def test_parse_a_good_file():
    m = parse_modality(json.dumps(MODALITY).encode(), "modality.json")
    assert m.part("state", "gripper")[1].start == 6 and m.part("action", "action.single_arm")[1].end == 6
    assert m.part("state", "action.gripper") is None
    assert m.dim_names("state", "observation.state", 7) == [*ARM, "gripper"]
    assert m.action["gripper"].range == (0.0, 1.0) and m.action["gripper"].absolute is True
    assert m.videos() == {"ego_view": "observation.images.top", "wrist": "observation.images.wrist"}
    assert m.annotation_column("annotation.human.task_description") == "task_index"
    gr00t_defaults = parse_modality(b'{"video": {"front": {}}, "annotation": {"human.validity": {}}}', "m")
    assert gr00t_defaults.videos() == {"front": "observation.images.front"}
    assert gr00t_defaults.annotation_column("human.validity") == "annotation.human.validity"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"states": {}}, r"unknown key 'states' \(did you mean 'state'\?\)"),
        ({"state": {"arm": {"strat": 0, "end": 6}}}, r"state\.arm: unknown key 'strat' \(did you mean 'start'\?\)"),
        ({"state": {"arm": {"start": 3, "end": 3}}}, r"state\.arm: start 3 and end 3 are not integers with 0 <= start < end"),
        ({"state": {"arm": {"start": False, "end": 3}}}, r"not integers with 0 <= start < end"),
        ({"state": {"arm": {"start": 0, "end": 4}, "hand": {"start": 3, "end": 6}}}, r"state parts 'arm' \[0, 4\) and 'hand' \[3, 6\) of observation.state overlap"),
        ({"action": {"eef": {"start": 0, "end": 3, "rotation_type": "euler_xyz"}}}, r"rotation_type: 'euler_xyz' is not one of"),
        ({"action": {"eef": {"start": 0, "end": 3, "range": [1.0, -1.0]}}}, r"range \[1.0, -1.0\] is not \[low, high\]"),
        ([1, 2], r"expected a mapping, got list"),
    ],
)  # fmt: skip
def test_parse_refuses_with_the_file_and_the_part(doc, message):
    with pytest.raises(ConfigError, match=message) as e:
        parse_modality(json.dumps(doc).encode(), "ds/meta/modality.json")
    assert str(e.value).startswith("ds/meta/modality.json")


def test_parts_of_different_columns_may_share_indices_and_bad_json_is_one_line():
    doc = {
        "state": {
            "arm": {"start": 0, "end": 6},
            "eef": {"start": 0, "end": 6, "original_key": "observation.eef"},
        }
    }
    assert (
        parse_modality(json.dumps(doc).encode(), "m").dim_names("state", "observation.eef", 6)[0] == "eef_0"
    )
    with pytest.raises(ConfigError, match=r"m: not valid JSON"):
        parse_modality(b'{"state": ', "m")


def test_the_sample_reads_by_part_names_into_the_spec(tmp_path):
    """info.json names the dims motor_0..6, which match nothing: the spec matches the parts' names."""
    src, emb, refs = _load(tmp_path, keys="{state: [single_arm, gripper], action: [single_arm, gripper]}")
    assert [r.frames for r in refs] == [30, 30]
    rows = list(read_episode(refs[0], src, emb))
    np.testing.assert_array_equal(np.stack([r["state"] for r in rows]), _column("observation.state"))
    np.testing.assert_array_equal(np.stack([r["action"] for r in rows]), _column("action"))
    assert rows[0]["task"] == json.loads((SAMPLE / "meta/tasks.jsonl").read_text().splitlines()[0])["task"]
    # without keys: the whole vectors, named by the parts all the same
    src, emb, refs = _load(tmp_path)
    np.testing.assert_array_equal(
        next(read_episode(refs[0], src, emb))["state"], _column("observation.state")[0]
    )
    with pytest.raises(ConfigError, match=r"Nor do the names meta/modality.json gives them by part match"):
        _load(tmp_path, spec=SAMPLES / "embodiments/sim_arm6_30hz.yaml")  # waist, shoulder, ...


def test_parts_are_concatenated_in_the_order_given_and_can_be_left_out(tmp_path):
    """`[gripper, single_arm]` reads the gripper first, as this spec has it (no reordering after);
    `[single_arm]` alone fits a 6-dim spec."""
    state, action = _column("observation.state"), _column("action")
    spec = _spec(tmp_path, ["gripper", *ARM], ["gripper", *ARM])
    src, emb, refs = _load(
        tmp_path,
        keys="{state: [gripper, single_arm], action: [action.gripper, action.single_arm]}",
        spec=spec,
    )
    plan = plan_dataset(SAMPLE, _info(str(SAMPLE)), [], src, emb)
    assert plan.state.order is None and [(c.part, c.start, c.end) for c in plan.state.cuts] == [
        ("gripper", 6, 7),
        ("single_arm", 0, 6),
    ]
    got = np.stack([r["state"] for r in read_episode(refs[0], src, emb)])
    np.testing.assert_array_equal(got[:, 0], state[:, 6])
    np.testing.assert_array_equal(got[:, 1:], state[:, :6])
    arm = _spec(tmp_path, ARM, ARM)
    src, emb, refs = _load(tmp_path, keys="{state: [single_arm], action: single_arm}", spec=arm)
    rows = list(read_episode(refs[0], src, emb))
    np.testing.assert_array_equal(np.stack([r["action"] for r in rows]), action[:, :6])


def test_info_names_that_match_the_spec_are_used_first(tmp_path):
    root = _copy(tmp_path)
    info = json.loads((root / "meta/info.json").read_text())
    joints = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper"]
    for column in ("observation.state", "action"):
        info["features"][column]["names"] = joints
    (root / "meta/info.json").write_text(json.dumps(info))
    spec = SAMPLES / "embodiments/sim_arm6_30hz.yaml"  # cameras top and wrist: the feature keys' names
    src, emb, refs = _load(
        tmp_path, root, "{state: [gripper, single_arm], action: [single_arm, gripper]}", spec
    )
    row = next(read_episode(refs[0], src, emb))
    np.testing.assert_array_equal(row["state"], _column("observation.state")[0])


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("{state: [single_arm, grip]}", r"modality.json: no state part 'grip' \(did you mean 'gripper'\?\)"),
        ("{state: [single_arm, single_arm, gripper]}", r"reads dims of 'observation.state' twice"),
        ("{state: [observation.state, gripper]}", r"reads dims of 'observation.state' twice"),
    ],
)
def test_keys_naming_a_missing_part_or_a_dim_twice_are_config_errors(tmp_path, keys, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, keys=keys)


def test_a_part_past_the_end_of_its_vector_is_a_config_error_at_listing(tmp_path):
    doc = json.loads(json.dumps(MODALITY))
    doc["state"]["gripper"] = {"start": 6, "end": 8}
    root = _copy(tmp_path, doc)
    with pytest.raises(
        ConfigError,
        match=r"modality.json: state part 'gripper' is \[6, 8\), past the end of 'observation.state' \(7 wide",
    ):
        _load(tmp_path, root)
    doc["state"]["gripper"] = {"start": 6, "end": 7, "original_key": "observation.gripper"}
    _copy(tmp_path / "b", doc)
    with pytest.raises(ConfigError, match=r"'observation.gripper', which is not a feature"):
        _load(tmp_path, tmp_path / "b/ds")


def test_a_parquet_vector_narrower_than_info_says_is_quarantined(tmp_path):
    root = _copy(tmp_path)
    table = pq.read_table(root / PARQUET)
    narrow = pa.array([v[:6] for v in table.column("observation.state").to_pylist()], pa.list_(pa.float32()))
    pq.write_table(table.set_column(0, "observation.state", narrow), root / PARQUET)
    src, emb, refs = _load(tmp_path, root, "{state: [single_arm, gripper]}")
    with pytest.raises(
        BadRecord, match=r"'observation.state' holds 6 values a row, meta/info.json says 7"
    ) as e:
        list(read_episode(refs[0], src, emb))
    assert (e.value.record.field, e.value.record.source_file) == ("observation.state", "ds#episode_000000")


def test_cameras_go_by_their_modality_names(tmp_path):
    """`ego_view` is observation.images.top: swapping the modality names' slots swaps the images."""
    src, emb, refs = _load(tmp_path)
    plain = next(read_episode(refs[0], src, emb))
    src, emb, refs = _load(tmp_path, keys="{cameras: {ego_view: left_wrist, wrist: base_0}}")
    swapped = next(read_episode(refs[0], src, emb))
    assert np.array_equal(plain["image_base_0"], swapped["image_left_wrist"])
    assert np.array_equal(plain["image_left_wrist"], swapped["image_base_0"])
    src, emb, refs = _load(tmp_path, keys="{cameras: {top: left_wrist, wrist: base_0}}")  # the key's own name
    assert np.array_equal(next(read_episode(refs[0], src, emb))["image_left_wrist"], plain["image_base_0"])
    spec = _spec(
        tmp_path, [*ARM, "gripper"], [*ARM, "gripper"], "{ego_view: base_0, top: base_1, wrist: left_wrist}"
    )
    with pytest.raises(ConfigError, match=r"\['ego_view', 'top'\] are names of one camera"):
        _load(tmp_path, spec=spec)


def test_an_annotation_gives_the_instruction(tmp_path):
    tasks = [json.loads(line)["task"] for line in (SAMPLE / "meta/tasks.jsonl").read_text().splitlines()]
    for name in ("human.task_description", "annotation.human.task_description"):
        src, emb, refs = _load(tmp_path, keys=f"{{instruction: {name}}}")
        assert next(read_episode(refs[1], src, emb))["task"] == tasks[1]
    doc = json.loads(json.dumps(MODALITY))
    doc["annotation"] = {"human.action.task_description": {}}  # GR00T's default column: not in this sample
    root = _copy(tmp_path, doc)
    with pytest.raises(
        ConfigError, match=r"names 'annotation.human.action.task_description', which is neither"
    ):
        _load(tmp_path, root, "{instruction: human.action.task_description}")


def test_over_http_like_a_local_path(tmp_path):
    """modality.json is read at the URL; a dataset without one (a 404) reads as before."""
    with http_server(SAMPLES) as url:
        src, emb, refs = _load(tmp_path, f"{url}/gr00t_sim", "{state: [single_arm, gripper]}")
        rows = list(read_episode(refs[0], src, emb))
        np.testing.assert_array_equal(np.stack([r["state"] for r in rows]), _column("observation.state"))
        spec = SAMPLES / "embodiments/sim_arm6_30hz.yaml"
        assert len(_load(tmp_path, f"{url}/lerobot_v21", spec=spec)[2]) == 3


def test_regenerating_gives_the_checked_in_files(tmp_path):
    for folder in generate_gr00t(tmp_path):
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        assert sum(p.stat().st_size for p in files) < 200_000
        for path in files:
            assert path.read_bytes() == (SAMPLES / path.relative_to(tmp_path)).read_bytes(), path


# nightly: the bundled ingest (`make test`) reads this sample end to end, from S3, over HTTP and on Ray;
# this run adds a broken unit to the accounting
@pytest.mark.nightly
def test_ingest_accounts_for_every_frame(tmp_path):
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        f"datasets:\n  - {{name: gr00t_sim, kind: ME, format: lerobot, path: '{SAMPLE}', embodiment: '{SPEC}', "
        "keys: {state: [single_arm, gripper], action: [single_arm, gripper]}, success: true}\n"
    )
    summary = ingest_cli(tmp_path / "out", workers=1, sources=sources)
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    acc = manifest["datasets"]["gr00t_sim"]["accounting"]
    assert (acc["read"], acc["written"], acc["quarantined"]) == (2, 2, 0)
    assert (acc["frames_read"], acc["frames_written"]) == (60, 60)
    assert manifest["datasets"]["gr00t_sim"]["samples"] == 60 and "gr00t_sim" in summary["datasets"]
