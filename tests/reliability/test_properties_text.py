"""Property-based tests (hypothesis) of the readers' text records: HL / VI annotation lines and web items.

The promise under test: bad input becomes a clear error naming the file and record (`BadRecord` for input
to quarantine, or the module's own documented error class), never an unexpected exception type, never a
hang, never silent garbage. Every test is derandomized and keeps no example database (properties_kit.py)."""

from __future__ import annotations

import io
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import items_as_written
from hypothesis import event, example, given
from hypothesis import strategies as st
from PIL import Image
from properties_kit import JSONISH, _settings

from vlamix.config import ConfigError
from vlamix.schemas.quarantine import BadRecord
from vlamix.sources.annotations_jsonl import EpisodeInfo, read_spans
from vlamix.sources.config import load_sources
from vlamix.sources.web import ItemBatch, ItemRef, RawTurn, list_items, read_items
from vlamix.transforms.boxes import parse_locations

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
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("props")


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
        # a detection turn whose boxes were all dropped (zero-size) is left out; no other turn is
        assert got["item"] == ref.item and len(got["turns"]) <= len(ref.turns)
        kept = [t["kind"] for t in got["turns"] if t["kind"] != "detection"]
        assert kept == [t.kind for t in ref.turns if t.kind != "detection"]
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
    out = items_as_written(read_items(batch))
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
    _check_items(batch, items_as_written(read_items(batch)))


@_settings(60)
@example(caption="a cat", bbox=[1, 2, "3", 4])
@given(
    caption=st.one_of(st.text(max_size=6), JSONISH),
    bbox=st.one_of(st.lists(st.floats(0, 5), min_size=4, max_size=4), JSONISH),
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
        _check_items(batch, items_as_written(read_items(batch)))
