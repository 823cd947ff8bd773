"""Property-based tests (hypothesis) over each reader's record parsing and the FAST decoder.

The promise under test: bad input becomes a clear error naming the file and record (`BadRecord` for input
to quarantine, or the module's own documented error class), never an unexpected exception type, never a
hang, never silent garbage. Every test is derandomized and keeps no example database, so runs repeat.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import resource
import struct
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from vlamix.config import ConfigError
from vlamix.schemas.quarantine import BadRecord
from vlamix.sources import aloha_hdf5, lerobot
from vlamix.sources.annotations_jsonl import EpisodeInfo, read_spans
from vlamix.sources.config import load_sources
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.tf_example import decode_example, encode_example
from vlamix.sources.tfrecord import TFRecordError, masked_crc, read_record_at, scan_records, write_records
from vlamix.sources.web import ItemBatch, ItemRef, RawTurn, list_items, read_items
from vlamix.tokenizers.fast import FastRangeError, FastTokenizer
from vlamix.transforms.boxes import parse_locations

BASE = settings(
    derandomize=True,
    database=None,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _settings(n: int) -> settings:
    return settings(BASE, max_examples=n)


# Values like 1e300 are chosen on purpose: they overflow float32 and must be caught as non-finite.
overflow_ok = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("props")


def _read_all(path: Path) -> tuple[list[bytes], TFRecordError | None]:
    """Every record a pipeline would read (list, then read each), and the error that stopped it."""
    out: list[bytes] = []
    try:
        for index, offset, length in scan_records(path):
            data = read_record_at(path, offset, index)
            assert len(data) == length
            out.append(data)
    except TFRecordError as e:
        return out, e
    return out, None


# ---------------------------------------------------------------------------------------------- TFRecord


@_settings(60)
@given(records=st.lists(st.binary(max_size=300), max_size=8))
def test_tfrecord_round_trips_arbitrary_records(folder, records):
    path = folder / "rt.tfrecord"
    assert write_records(path, records) == len(records)
    got, error = _read_all(path)
    assert error is None and got == records
    offsets = [off for _, off, _ in scan_records(path)]
    assert [read_record_at(path, off, i) for i, off in enumerate(offsets)] == records


@_settings(120)
@given(
    records=st.lists(st.binary(max_size=64), min_size=1, max_size=6),
    flip=st.booleans(),
    where=st.floats(0.0, 1.0, exclude_max=True),
    mask=st.integers(1, 255),
)
def test_tfrecord_damage_yields_the_records_before_it_then_a_tfrecord_error(
    folder, records, flip, where, mask
):
    """One flipped byte anywhere, or a cut anywhere: the records before the damage come back intact, then
    TFRecordError naming the file and the damaged record (a cut at a record boundary is a shorter, valid
    file). CRC32C catches every single-byte error, so a flip is never read as a wrong payload."""
    path = folder / "damaged.tfrecord"
    write_records(path, records)
    blob = bytearray(path.read_bytes())
    starts = np.cumsum([0] + [12 + len(r) + 4 for r in records])
    pos = int(where * len(blob))
    k = int(np.searchsorted(starts, pos, side="right")) - 1  # the record holding byte `pos`
    if flip:
        blob[pos] ^= mask
    else:
        del blob[pos:]
    path.write_bytes(bytes(blob))
    got, error = _read_all(path)
    assert got == records[:k]
    if not flip and pos == starts[k]:
        assert error is None
    else:
        assert error is not None, "damage read as valid records"
        assert str(path) in str(error) and f"record {k} " in str(error)


@_settings(120)
@example(length=2**64 - 1, tail=b"abc", offset=0)
@example(length=2**63, tail=b"", offset=0)
@example(length=2**40, tail=b"x" * 20, offset=0)
@given(
    length=st.one_of(st.integers(0, 40), st.integers(0, 2**64 - 1)),
    tail=st.binary(max_size=64),
    offset=st.integers(0, 80),
)
def test_tfrecord_header_claiming_any_length_is_a_tfrecord_error(folder, length, tail, offset):
    """A header whose length checksum is right but whose length is wrong (up to 2**64 - 1), at any offset
    a caller may hand `read_record_at`: bytes of the claimed length, or TFRecordError; never an
    OverflowError or a read of gigabytes."""
    header = struct.pack("<Q", length)
    path = folder / "header.tfrecord"
    path.write_bytes(header + struct.pack("<I", masked_crc(header)) + tail)
    got, _ = _read_all(path)
    assert all(len(r) == length for r in got)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        data = read_record_at(path, offset, 3)
    except TFRecordError as e:
        assert str(path) in str(e)
    else:
        assert offset == 0 and data == tail[:length] and len(tail) == length + 4
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: < 64 MiB more


# ------------------------------------------------------------------------------------------- tf.Example

_INT64 = st.integers(-(2**63), 2**63 - 1)
_FEATURE = st.one_of(
    st.lists(st.binary(max_size=20), max_size=5),
    st.lists(st.floats(width=32), max_size=6).map(lambda v: np.asarray(v, np.float32)),
    st.lists(_INT64, max_size=6).map(lambda v: np.asarray(v, np.int64)),
    st.lists(_INT64, min_size=1, max_size=6),  # plain Python ints, as a writer may hand them
)
_FEATURES = st.dictionaries(st.text(max_size=12), _FEATURE, max_size=5)


def _check_decoded(out: dict) -> None:
    for name, value in out.items():
        assert isinstance(name, str)
        if isinstance(value, list):
            assert all(isinstance(v, bytes) for v in value)
        else:
            assert isinstance(value, np.ndarray) and value.dtype in (np.float32, np.int64) and value.ndim == 1


@_settings(150)
@given(features=_FEATURES)
def test_tf_example_round_trips_arbitrary_features(features):
    out = decode_example(encode_example(features))
    _check_decoded(out)
    assert sorted(out) == sorted(features)
    for name, want in features.items():
        got = out[name]
        if isinstance(want, list) and (not want or isinstance(want[0], bytes)):
            assert got == want
        elif np.asarray(want).dtype.kind == "f":
            assert got.dtype == np.float32 and np.array_equal(got, want, equal_nan=True)
            assert np.array_equal(np.signbit(got), np.signbit(want))
        else:
            assert got.dtype == np.int64 and got.tolist() == list(np.asarray(want).tolist())


@_settings(40)
@example(value=[2**63])
@example(value=[-(2**63) - 1])
@given(
    value=st.one_of(
        st.lists(st.integers(2**63, 2**70), min_size=1, max_size=3),
        st.lists(st.integers(-(2**70), -(2**63) - 1), min_size=1, max_size=3),
        st.integers(2**63, 2**64 - 1).map(lambda v: np.asarray([v], np.uint64)),
    )
)
def test_tf_example_refuses_ints_outside_int64_instead_of_wrapping(value):
    with pytest.raises(ValueError, match="int64") as info:
        encode_example({"steps/big": value})
    assert "steps/big" in str(info.value)


def _protobuf_bytes() -> st.SearchStrategy[bytes]:
    """Random bytes, and valid encodings with one byte flipped or cut short (they reach deeper)."""

    def damage(args):
        blob, where, mask, cut = args
        blob = bytearray(blob)
        if not blob:
            return bytes(blob)
        pos = int(where * len(blob))
        if cut:
            return bytes(blob[:pos])
        blob[pos] ^= mask
        return bytes(blob)

    valid = _FEATURES.map(encode_example)
    return st.one_of(
        st.binary(max_size=200),
        st.tuples(valid, st.floats(0, 1, exclude_max=True), st.integers(1, 255), st.booleans()).map(damage),
    )


@_settings(300)
@example(data=b"\x0a\xff\xff\xff\xff\x0f")  # features: a length prefix claiming 4 GiB
@example(data=b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\x7f")  # ... and 2**63
@example(data=b"\x0a\x08\x0a\x06\x0a\x01\xff\x12\x01\x00")  # a feature name that is not UTF-8
@example(data=b"\x0a" * 100 + b"\x00")  # nested length prefixes
@given(data=_protobuf_bytes())
def test_tf_example_decodes_any_bytes_or_raises_decode_error(data):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        out = decode_example(data)
    except DecodeError:
        pass
    else:
        _check_decoded(out)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB


# ------------------------------------------------------------------------------------- HL / VI annotations

EPISODES = {
    0: EpisodeInfo(100, 10.0, "written"),
    1: EpisodeInfo(50, 10.0, "written"),
    2: EpisodeInfo(40, 10.0, "quarantined: NaN"),
    3: EpisodeInfo(7, 3.0, "written"),
}
_NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1.0, 12.0),
    st.integers(-3, 12),
)


@pytest.fixture(scope="module")
def ann_sources(folder):
    (folder / "eps").mkdir()
    (folder / "sources.yaml").write_text(
        "datasets:\n"
        "  - {name: robot, kind: MM, format: aloha_hdf5, path: eps, embodiment: mobile_aloha}\n"
        "  - {name: ann_hl, kind: HL, format: annotations_jsonl, path: hl.jsonl, dataset: robot}\n"
        "  - {name: ann_vi, kind: VI, format: annotations_jsonl, path: vi.jsonl, dataset: robot}\n"
    )
    sources = load_sources(folder / "sources.yaml")
    return sources, {a.kind: a for a in sources.annotations}


@st.composite
def _annotation_line(draw, kind: str, value: st.SearchStrategy) -> bytes:
    """A plausible line (about half: known episode, sensible times), or a damaged or hostile one."""
    shape = draw(st.sampled_from(["plausible", "plausible", "object", "bytes", "json"]))
    if shape == "bytes":
        return draw(st.binary(max_size=40))
    if shape == "json":
        return json.dumps(
            draw(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.none())))
        ).encode()
    text_key = "subtask" if kind == "HL" else "instruction"
    if shape == "plausible":
        start = draw(st.floats(0.0, 10.0) | st.integers(0, 9))
        obj = {"dataset": "robot", "episode": draw(st.sampled_from([0, 0, 1, 3])), text_key: "wipe  it"}
        if kind == "HL":
            return json.dumps({**obj, "start": start, "end": start + draw(st.floats(0.0, 6.0))}).encode()
        return json.dumps({**obj, "time": start}).encode()
    obj = {
        "dataset": draw(st.sampled_from(["robot", "robot", "robot", "other"])),
        "episode": draw(st.integers(-1, 5)),
        draw(st.sampled_from([text_key, text_key, "subtask", "instruction"])): draw(
            st.sampled_from(["wipe the table", "  ", "", "put  it\tdown"])
        ),
    }
    if kind == "HL":
        obj |= {"start": draw(value), "end": draw(value)}
    else:
        obj["time"] = draw(value)
    if draw(st.integers(0, 4)) == 0:
        del obj[draw(st.sampled_from(sorted(obj)))]
    return json.dumps(obj).encode()


def _write_lines(path: Path, lines: list[bytes]) -> list[bytes]:
    lines = [line.replace(b"\n", b" ").replace(b"\r", b" ") for line in lines]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def _check_spans(lines: list[bytes], src, spans, bad, read) -> None:
    """Every non-blank line is exactly one valid span or one quarantine record naming file and line."""
    nonblank = [n for n, line in enumerate(lines, start=1) if line.strip()]
    assert read == len(nonblank)
    for q in bad:
        assert q.dataset == src.name and q.source_file.startswith(f"{src.path}:") and q.reason
    bad_lines = [int(q.source_file.rsplit(":", 1)[1]) for q in bad]
    assert sorted([s.line for s in spans] + bad_lines) == nonblank
    for s in spans:
        assert type(s.episode) is int and EPISODES[s.episode].status == "written"
        assert type(s.start) is int and type(s.end) is int
        assert 0 <= s.start < s.end <= EPISODES[s.episode].frames and s.text.strip() == s.text != ""
        obj = json.loads(lines[s.line - 1])
        for key in ("start", "end") if src.kind == "HL" else ("time",):
            assert type(obj[key]) in (int, float) and math.isfinite(obj[key]), (key, obj)
    for episode in {s.episode for s in spans}:
        mine = sorted((s.start, s.end) for s in spans if s.episode == episode)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(mine)), mine  # no frame in two spans


@_settings(150)
@given(data=st.data(), kind=st.sampled_from(["HL", "VI"]))
def test_annotation_lines_become_spans_or_quarantine_records(folder, ann_sources, data, kind):
    """Arbitrary bytes, non-UTF-8, non-objects, missing keys, NaN/inf, start > end, unknown episodes:
    each line is a valid span or a quarantine record naming the file and line, nothing else."""
    sources, by_kind = ann_sources
    src = by_kind[kind]
    lines = data.draw(st.lists(st.one_of(_annotation_line(kind, _NUMBER), st.just(b"")), max_size=8))
    lines = _write_lines(folder / src.path, lines)
    spans, bad, read = read_spans(sources, src, EPISODES)
    _check_spans(lines, src, spans, bad, read)
    event(f"{kind}: {'some' if spans else 'no'} valid span")


_WRONG = st.one_of(st.none(), st.booleans(), st.text(max_size=4), st.lists(st.integers(0, 3), max_size=2))


def _one_line(kind: str, field: str, value) -> bytes:
    obj = (
        {"dataset": "robot", "episode": 0, "start": 0.5, "end": 2.0, "subtask": "wipe"}
        if kind == "HL"
        else {"dataset": "robot", "episode": 0, "time": 0.5, "instruction": "wipe"}
    )
    obj["time" if kind == "VI" and field != "episode" else field] = value
    return json.dumps(obj).encode()


@_settings(60)
@example(kind="HL", field="start", value="abc", others=[])
@example(kind="VI", field="time", value=True, others=[])
@given(
    kind=st.sampled_from(["HL", "VI"]),
    field=st.sampled_from(["start", "end"]),
    value=_WRONG,
    others=st.lists(
        st.one_of(_annotation_line("HL", st.one_of(_NUMBER, _WRONG)), _annotation_line("VI", _WRONG)),
        max_size=3,
    ),
)
def test_annotation_times_of_the_wrong_type_are_quarantined(folder, ann_sources, kind, field, value, others):
    """A time, start or end that is not a number (a string, null, a list, a bool): a quarantine record
    naming file and line, like any malformed line, beside lines of any kind."""
    sources, by_kind = ann_sources
    src = by_kind[kind]
    lines = _write_lines(folder / src.path, [_one_line(kind, field, value), *others])
    spans, bad, read = read_spans(sources, src, EPISODES)
    _check_spans(lines, src, spans, bad, read)
    assert 1 in [int(q.source_file.rsplit(":", 1)[1]) for q in bad]


@_settings(10)
@example(kind="HL", field="start", digits=310)
@given(
    kind=st.sampled_from(["HL", "VI"]), field=st.sampled_from(["start", "end"]), digits=st.integers(309, 4000)
)
def test_annotation_time_too_large_for_a_float_is_quarantined(folder, ann_sources, kind, field, digits):
    sources, by_kind = ann_sources
    src = by_kind[kind]
    lines = _write_lines(folder / src.path, [_one_line(kind, field, 10**digits)])
    spans, bad, read = read_spans(sources, src, EPISODES)
    _check_spans(lines, src, spans, bad, read)


@_settings(4)
@example(kind="HL", value=True)
@given(kind=st.sampled_from(["HL", "VI"]), value=st.booleans())
def test_annotation_episode_that_is_a_bool_is_quarantined(folder, ann_sources, kind, value):
    sources, by_kind = ann_sources
    src = by_kind[kind]
    lines = _write_lines(folder / src.path, [_one_line(kind, "episode", value)])
    spans, bad, read = read_spans(sources, src, EPISODES)
    _check_spans(lines, src, spans, bad, read)


@_settings(4)
@given(
    kind=st.sampled_from(["HL", "VI"]),
    line=st.one_of(
        st.integers(4301, 5000).map(lambda n: b"1" * n),
        st.integers(100_000, 101_000).map(lambda n: b"[" * n),
    ),
)
def test_pathological_json_lines_are_quarantined(folder, ann_sources, kind, line):
    sources, by_kind = ann_sources
    src = by_kind[kind]
    lines = _write_lines(folder / src.path, [line])
    spans, bad, read = read_spans(sources, src, EPISODES)
    _check_spans(lines, src, spans, bad, read)


# ------------------------------------------------------------------------------------------------ web


@pytest.fixture(scope="module")
def web_images(folder) -> dict[str, Path]:
    (folder / "web" / "images").mkdir(parents=True)
    good = folder / "web" / "images" / "good.png"
    buf = io.BytesIO()
    Image.fromarray(np.arange(20 * 16 * 3, dtype=np.uint8).reshape(16, 20, 3)).save(buf, format="PNG")
    good.write_bytes(buf.getvalue())
    broken = folder / "web" / "images" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    return {"good": good, "broken": broken}


def _turn(boxes: st.SearchStrategy) -> st.SearchStrategy[RawTurn]:
    """A caption, a question, or a detection with wild boxes or (twice as often) boxes on the 20x16 image."""
    text = st.sampled_from(["", " ", "a cup", "a cup", "what is it?", "what is it?"])
    wild = st.tuples(st.sampled_from(["cup", "dog"]), boxes, boxes, boxes, boxes)
    near = st.tuples(
        st.just("cup"), st.floats(-1, 12), st.floats(-1, 8), st.floats(0.5, 9), st.floats(0.5, 9)
    )

    def detection(box: st.SearchStrategy, min_size: int) -> st.SearchStrategy[RawTurn]:
        listed = st.lists(box, min_size=min_size, max_size=3).map(tuple)
        return st.builds(RawTurn, st.just("detection"), st.just("detect cup"), st.just(""), listed)

    return st.one_of(
        st.builds(RawTurn, st.just("caption"), st.just("caption en"), text),
        st.builds(RawTurn, st.just("vqa"), text, text),
        detection(wild, 0),
        detection(near, 1),
        detection(near, 1),
    )


def _check_items(batch: ItemBatch, out: list) -> None:
    assert len(out) == len(batch.items)
    for ref, got in zip(batch.items, out, strict=True):
        if isinstance(got, BadRecord):
            rec = got.record
            assert (rec.dataset, rec.source_file, rec.item) == (batch.dataset, ref.source_file, ref.item)
            assert ref.source_file in str(got)
            continue
        assert got["item"] == ref.item and len(got["turns"]) == len(ref.turns)
        for turn in got["turns"]:
            assert turn["target"]
            if turn["kind"] == "detection":  # one <loc> quadruple per box, labels in order
                labels = [b["label"] for b in turn["boxes"]]
                assert [label for label, _ in parse_locations(turn["target"])] == labels
            for box in turn["boxes"] or []:
                coords = [box[k] for k in ("y_min", "x_min", "y_max", "x_max")]
                assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in coords), box


def _web_batch(web_images, specs) -> ItemBatch:
    refs = tuple(
        ItemRef(
            k, str(k), f"images/{web_images[which].name}", str(web_images[which]), -1, tuple(turns), error
        )
        for k, (which, turns, error) in enumerate(specs)
    )
    return ItemBatch("web", 0, refs, "train", "/unused")


_ITEM_SPEC = st.tuples(
    st.sampled_from(["good", "good", "good", "broken"]),
    st.lists(_turn(st.floats(-30, 40) | st.floats(allow_nan=False)), max_size=2),
    st.sampled_from([None, None, None, "image file images/x.png is missing"]),
)


@_settings(150)
@given(specs=st.lists(_ITEM_SPEC, min_size=1, max_size=3))
def test_web_items_are_records_or_bad_records(web_images, specs):
    """Any turns (empty targets, boxes off the image, infinite coordinates) and broken images: each item is
    a record whose boxes lie in [0, 1], or a BadRecord naming its file and item."""
    batch = _web_batch(web_images, specs)
    out = list(read_items(batch))
    _check_items(batch, out)
    for o in out:
        event(
            o.record.reason[:22]
            if isinstance(o, BadRecord)
            else f"record, boxes: {any(t['boxes'] for t in o['turns'])}"
        )


@_settings(20)
@example(box=(float("nan"), 1.0, 2.0, 3.0))
@given(box=st.permutations([float("nan"), 1.0, 2.0, 3.0]).map(tuple))
def test_web_nan_box_is_quarantined(web_images, box):
    batch = _web_batch(
        web_images, [("good", [RawTurn("detection", "detect cup", "", (("cup", *box),))], None)]
    )
    _check_items(batch, list(read_items(batch)))


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 50) | st.floats(-5, 50) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=6,
)


@_settings(60)
@example(caption="a cat", bbox=[1, 2, "3", 4])
@given(
    caption=st.one_of(st.text(max_size=6), _JSONISH),
    bbox=st.one_of(st.lists(st.floats(0, 5), min_size=4, max_size=4), _JSONISH),
)
def test_web_coco_values_of_any_type_are_records_or_bad_records(folder, web_images, caption, bbox):
    root = folder / "web"
    (root / "captions.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "good.png"}],
                "annotations": [{"id": 1, "image_id": 1, "caption": caption}],
            }
        )
    )
    (root / "instances.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "good.png"}],
                "categories": [{"id": 1, "name": "cup"}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": bbox}],
            }
        )
    )
    (root / "sources.yaml").write_text(
        "datasets:\n  - name: web\n    kind: WD\n    images: images\n    annotations:\n"
        "      - {format: coco_captions, path: captions.json}\n"
        "      - {format: coco_detection, path: instances.json}\n"
    )
    sources = load_sources(root / "sources.yaml")
    try:
        batches = list_items(sources, sources.web[0], "/unused")
    except ConfigError as e:
        assert "captions.json" in str(e) or "instances.json" in str(e)
        return
    for batch in batches:
        _check_items(batch, list(read_items(batch)))


# -------------------------------------------------------------------------------------------- LeRobot


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
    version=st.one_of(st.sampled_from([*lerobot.VERSIONS, "v1.6", "3.0", "v2.1 "]), _JSONISH),
    extra=st.dictionaries(st.text(max_size=5), _JSONISH, max_size=3),
)
def test_lerobot_version_detection_knows_the_version_or_names_the_file(folder, version, extra):
    root = _lerobot_info(folder, json.dumps({**extra, "codebase_version": version}).encode())
    _check_info(root)


@_settings(30)
@example(blob=b"{not json")
@given(blob=st.one_of(st.binary(max_size=30), _JSONISH.map(lambda v: json.dumps(v).encode())))
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
    return ref, lambda: list(aloha_hdf5.read_episode(ref, src, emb))


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


# ----------------------------------------------------------------------------------------------- FAST

H, D = 10, 3


def _smooth(n: int, h: int, d: int, seed: int = 0) -> np.ndarray:
    r = np.random.default_rng(seed)
    t = np.linspace(0, 1, h)[None, :, None]
    wave = np.sin(2 * np.pi * (t * r.uniform(0.2, 1.5, (n, 1, d)) + r.uniform(0, 1, (n, 1, d))))
    return np.clip(wave * r.uniform(0.2, 1, (n, 1, d)), -1, 1)


@pytest.fixture(scope="module")
def fast() -> FastTokenizer:
    return FastTokenizer.fit(_smooth(200, H, D), scale=10.0, vocab_size=256)


def _check_decode(out: np.ndarray, valid: np.ndarray, n: int, horizon: int, dim: int) -> None:
    assert out.shape == (n, horizon, dim) and valid.shape == (n,) and valid.dtype == bool
    assert np.isfinite(out[valid]).all() and np.isnan(out[~valid]).all()


@_settings(200)
@given(
    data=st.data(),
    shape=st.sampled_from([(H, D), (H, D), (5, 3), (H * D, 1), (1, 1), (0, 3), (4, 0), (-1, 3)]),
)
def test_fast_decode_of_any_token_ids_is_finite_or_flagged_invalid(fast, data, shape):
    """Valid ids, ids out of the vocabulary (negative, huge), empty lists, any horizon and dim: actions of
    the asked shape, finite where `valid`, NaN (never zeros) where not."""
    n = fast.vocab_size
    ids = st.one_of(st.integers(0, n - 1), st.integers(-(2**40), 2**40), st.sampled_from([-1, n, n + 1]))
    lists = data.draw(st.lists(st.lists(ids, max_size=40), max_size=4))
    if min(shape) < 1:  # a caller's mistake, told whatever the tokens (never a crash inside scipy)
        with pytest.raises(ValueError, match="horizon >= 1 and dim >= 1"):
            fast.decode(lists, *shape)
        return
    out, valid = fast.decode(lists, *shape)
    _check_decode(out, valid, len(lists), *shape)
    for b, seq in enumerate(lists):
        if any(not 0 <= i < n for i in seq):
            assert not valid[b]


@st.composite
def _chunk(draw) -> np.ndarray:
    t = np.linspace(0, 1, H)[:, None]
    freq = np.asarray(draw(st.lists(st.floats(0.0, 2.0), min_size=D, max_size=D)))
    phase = np.asarray(draw(st.lists(st.floats(0.0, 1.0), min_size=D, max_size=D)))
    amp = np.asarray(draw(st.lists(st.floats(0.0, 1.5), min_size=D, max_size=D)))
    return amp * np.sin(2 * np.pi * (t * freq + phase))


@_settings(150)
@given(chunk=_chunk(), cut=st.integers(1, 8), junk=st.integers(0, 255))
def test_fast_round_trip_is_within_quantization_and_damaged_encodings_are_invalid(fast, chunk, cut, junk):
    """In range: decode(encode(chunk)) is within the quantization bounds (per-dim RMSE <= 0.5 / scale, max
    error <= 0.5 * sqrt(H) / scale), and a truncated or extended encoding is invalid. Out of the fitted
    range: FastRangeError, never a clipped chunk."""
    event(f"in range: {fast.in_range(chunk)[0]}")
    if not fast.in_range(chunk)[0]:
        with pytest.raises(FastRangeError, match="outside the fitted range"):
            fast.encode(chunk)
        return
    (ids,) = fast.encode(chunk)
    out, valid = fast.decode([ids, ids[: max(0, len(ids) - cut)], [*ids, junk]], H, D)
    _check_decode(out, valid, 3, H, D)
    assert valid.tolist() == [True, False, False]
    err = out[0] - chunk
    assert np.sqrt((err**2).mean(axis=0)).max() <= 0.5 / fast.scale + 1e-9
    assert np.abs(err).max() <= 0.5 * np.sqrt(H) / fast.scale + 1e-9
