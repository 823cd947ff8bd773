"""Property-based tests (hypothesis) of the readers' numeric records: LeRobot metadata and columns, and
Mobile-ALOHA HDF5 episodes written with hypothesis-chosen values.

The promise under test: bad input becomes a clear error naming the file and record (`BadRecord` for input
to quarantine, or the module's own documented error class), never an unexpected exception type, never a
hang, never silent garbage. Every test is derandomized and keeps no example database (properties_kit.py)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pytest
from conftest import as_written
from hypothesis import event, example, given
from hypothesis import strategies as st
from properties_kit import JSONISH, _settings, overflow_ok

from vlamix.config import ConfigError
from vlamix.schemas.quarantine import BadRecord
from vlamix.sources import aloha_hdf5, lerobot
from vlamix.sources.config import load_sources
from vlamix.sources.episode import EpisodeRef

# -------------------------------------------------------------------------------------------- LeRobot


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("props")


def _lerobot_info(folder: Path, blob: bytes) -> Path:
    root = folder / "lerobot"
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "info.json").write_bytes(blob)
    lerobot._info.cache_clear()
    return root


def _check_info(root: Path) -> None:
    try:
        info = lerobot._info(str(root))
    except ConfigError as e:
        assert str(root / "meta" / "info.json") in str(e) or str(root) in str(e)
    else:
        assert isinstance(info, dict) and info["codebase_version"] in lerobot.VERSIONS


@_settings(60)
@given(
    version=st.one_of(st.sampled_from([*lerobot.VERSIONS, "v1.6", "3.0", "v2.1 "]), JSONISH),
    extra=st.dictionaries(st.text(max_size=5), JSONISH, max_size=3),
)
def test_lerobot_version_detection_knows_the_version_or_names_the_file(folder, version, extra):
    root = _lerobot_info(folder, json.dumps({**extra, "codebase_version": version}).encode())
    _check_info(root)


@_settings(30)
@example(blob=b"{not json")
@given(blob=st.one_of(st.binary(max_size=30), JSONISH.map(lambda v: json.dumps(v).encode())))
def test_lerobot_malformed_info_json_is_a_config_error(folder, blob):
    _check_info(_lerobot_info(folder, blob))


@_settings(40)
@example(specs={"train": "0-10"})
@given(
    specs=st.dictionaries(
        st.sampled_from(["train", "validation", "test"]),
        st.one_of(
            st.tuples(st.integers(0, 99), st.integers(0, 99)).map(lambda t: f"{t[0]}:{t[1]}"),
            st.text(alphabet="0123456789:- ab", max_size=6),
        ),
    )
)
def test_lerobot_splits_parse_or_raise_config_error(specs):
    try:
        ranges = lerobot._split_ranges({"splits": specs})
    except ConfigError as e:
        assert "split" in str(e)
        return
    assert len(ranges) == len(specs)
    for (name, lo, hi), (native, spec) in zip(ranges, specs.items(), strict=True):
        assert name == {"validation": "val"}.get(native, native) and f"{lo}:{hi}" == spec


_EP_REF = EpisodeRef("me", 4, "/data/me", "me#episode_000004", frames=0, record=4)


@st.composite
def _table_values(draw, max_rows: int = 6):
    rows = draw(st.integers(1, max_rows))
    width = draw(st.integers(1, 4))
    values = np.asarray(
        draw(st.lists(st.floats(-10, 10), min_size=rows * width, max_size=rows * width)), np.float64
    ).reshape(rows, width)
    for _ in range(draw(st.integers(0, 2))):
        r, c = draw(st.integers(0, rows - 1)), draw(st.integers(0, width - 1))
        values[r, c] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e300]))
    return values


@overflow_ok
@_settings(100)
@given(values=_table_values(), as_list=st.booleans(), width=st.integers(1, 5))
def test_lerobot_columns_are_finite_or_bad_records_naming_frame_and_field(values, as_list, width):
    """NaN/inf at any frame, a float32 overflow, a width the spec does not expect: finite rows of the
    spec's width, or a BadRecord naming the episode, the first bad frame and the field."""
    if as_list:
        table = pa.table({"observation.state": pa.array(values.tolist(), pa.list_(pa.float64()))})
        keys = None
    else:
        table = pa.table({f"s{i}": values[:, i] for i in range(values.shape[1])})
        keys = [f"s{i}" for i in range(values.shape[1])]
    ep = lerobot._Episode(_EP_REF)
    as32 = values.astype(np.float32)
    try:
        out = lerobot._column(table, keys, "observation.state", width, "state", ep)
    except BadRecord as e:
        rec = e.record
        assert (rec.source_file, rec.episode, rec.field) == (_EP_REF.source_file, _EP_REF.index, "state")
        if values.shape[1] == width:
            first = int(np.flatnonzero(~np.isfinite(as32).all(axis=1))[0])
            assert rec.frame == first and f"frame {first}" in str(e)
        event("bad record")
        return
    event("finite rows")
    assert values.shape[1] == width and np.isfinite(as32).all()
    np.testing.assert_array_equal(out, as32)


@_settings(30)
@example(rows=[[1.0, 2.0], [3.0]])
@given(
    rows=st.lists(
        st.one_of(st.none(), st.lists(st.floats(-1, 1), min_size=1, max_size=3)), min_size=2, max_size=5
    )
)
def test_lerobot_ragged_list_column_is_a_bad_record(rows):
    """Rows of a list column that disagree in width, or null rows: a BadRecord naming the field."""
    table = pa.table({"observation.state": pa.array(rows, pa.list_(pa.float64()))})
    try:
        out = lerobot._column(table, None, "observation.state", 2, "state", lerobot._Episode(_EP_REF))
    except BadRecord as e:
        rec = e.record
        assert rec.field in ("state", "observation.state") and rec.source_file == _EP_REF.source_file
        event(f"bad record: {rec.field}")
    else:
        assert out.shape == (len(rows), 2) and np.isfinite(out).all()
        event("finite rows")


# ------------------------------------------------------------------------------------------ ALOHA HDF5


@pytest.fixture(scope="module")
def aloha(folder):
    root = folder / "aloha"
    (root / "eps").mkdir(parents=True)
    (root / "sources.yaml").write_text(
        "datasets:\n  - {name: mm, kind: MM, format: aloha_hdf5, path: eps, embodiment: mobile_aloha, task: tidy}\n"
    )
    sources = load_sources(root / "sources.yaml")
    src = sources.datasets[0]
    return root, sources, src, sources.embodiment(src)


def _write_aloha(path: Path, qpos: np.ndarray, action: np.ndarray, base: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.attrs["compress"] = False
        f.create_dataset("observations/qpos", data=qpos)
        f.create_dataset("action", data=action)
        f.create_dataset("base_action", data=base)
        f.create_dataset("observations/images/cam_high", data=np.full((len(qpos), 6, 8, 3), 90, np.uint8))


def _read_aloha(aloha, qpos, action, base):
    root, sources, src, emb = aloha
    _write_aloha(root / "eps" / "episode_0.hdf5", qpos, action, base)
    (ref,) = aloha_hdf5.list_episodes(sources, src)
    return ref, lambda: as_written(aloha_hdf5.read_episode(ref, src, emb))


def _poisoned(draw, rows: int, width: int) -> np.ndarray:
    values = np.asarray(draw(st.lists(st.floats(-3, 3), min_size=rows * width, max_size=rows * width)))
    values = values.reshape(rows, width)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        r, c = draw(st.integers(0, rows - 1)), draw(st.integers(0, width - 1))
        values[r, c] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e300]))
    return values


@overflow_ok
@_settings(25)
@given(data=st.data(), rows=st.integers(1, 4))
def test_aloha_episode_is_finite_frames_or_a_bad_record_naming_frame_and_field(aloha, data, rows):
    qpos = _poisoned(data.draw, rows, 14)
    action = _poisoned(data.draw, rows, 14)
    base = _poisoned(data.draw, rows, 2)
    ref, read = _read_aloha(aloha, qpos, action, base)
    state32 = qpos.astype(np.float32)
    action32 = np.concatenate([action, base], axis=1).astype(np.float32)
    try:
        out = read()
    except BadRecord as e:
        rec = e.record
        assert rec.source_file == ref.source_file and rec.episode == ref.index
        arr = state32 if rec.field == "state" else action32
        assert rec.field in ("state", "action") and not np.isfinite(arr).all()
        assert rec.frame == int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        if rec.field == "action":
            assert np.isfinite(state32).all()  # the state is checked first
        event(f"bad record: {rec.field}")
        return
    event("frames")
    assert np.isfinite(state32).all() and np.isfinite(action32).all()
    assert len(out) == rows
    np.testing.assert_array_equal(np.asarray([r["action"] for r in out], np.float32), action32)
    np.testing.assert_array_equal(np.asarray([r["state"] for r in out], np.float32), state32)


@_settings(20)
@example(rows=3, action_rows=3, base_rows=2)
@example(rows=2, action_rows=3, base_rows=3)
@given(rows=st.integers(1, 4), action_rows=st.integers(1, 4), base_rows=st.integers(1, 4))
def test_aloha_fields_of_different_lengths_are_a_bad_record(aloha, rows, action_rows, base_rows):
    """/observations/qpos, /action and /base_action of any lengths: frames when they agree, else a
    BadRecord naming the file and a disagreeing field (never a crash in np.concatenate)."""
    ref, read = _read_aloha(
        aloha, np.zeros((rows, 14)), np.zeros((action_rows, 14)), np.zeros((base_rows, 2))
    )
    try:
        out = read()
    except BadRecord as e:
        assert len({rows, action_rows, base_rows}) > 1
        assert e.record.source_file == ref.source_file and e.record.episode == ref.index
        assert e.record.field in ("action", "/action", "/base_action"), e.record
        return
    assert rows == action_rows == base_rows and len(out) == rows
