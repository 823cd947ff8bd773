"""Pointing rows of a Hugging Face-style parquet (`points` + `label`/`question`): targets are loc pairs after
the resize-with-pad, each point landing on its pixel; malformed points and points off the image are
refused naming the row."""

from __future__ import annotations

import io
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLES, items_as_written
from PIL import Image

from vlamix.config import ConfigError
from vlamix.schemas.item import ITEM
from vlamix.schemas.quarantine import BadRecord
from vlamix.sources.config import load_sources
from vlamix.sources.synthetic.wd_samples import POINTS, SMALL_SIDE, generate_pointing
from vlamix.sources.web import list_items, read_items
from vlamix.transforms.boxes import LOC_BINS, padded_to_point, parse_points, point_text, point_to_padded
from vlamix.transforms.image import ResizeWithPad, decode_jpeg

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
PAIRS = pa.list_(pa.list_(pa.float64()))  # the [[x, y], ...] form
RESIZE = ResizeWithPad()


def _read(sources_path, name="pts") -> tuple[list[dict], list]:
    sources = load_sources(sources_path)
    src = next(w for w in sources.web if w.name == name)
    got = []
    for batch in list_items(sources, src, "/unused"):
        got += items_as_written(read_items(batch))
    return [g for g in got if not isinstance(g, BadRecord)], [
        g.record for g in got if isinstance(g, BadRecord)
    ]


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _write(folder, name: str, columns: dict, types: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    types = types or {}
    table = pa.table({k: pa.array(v, types.get(k)) for k, v in columns.items()})
    pq.write_table(table, folder / f"{name}.parquet")


def _sources(tmp_path, write_sources, columns="{image: image, points: points, label: label}", path="pts"):
    return write_sources(
        tmp_path,
        f"""
        datasets:
          - {{name: pts, kind: WD, format: hf_parquet, path: {path}, columns: {columns}}}
        """,
    )


def _dots(height: int, width: int, pixels: list[tuple[int, int]]) -> np.ndarray:
    """Black, with a 3x3 white dot centred on each (row, column)."""
    image = np.zeros((height, width, 3), np.uint8)
    for r, c in pixels:
        image[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = 255
    return image


def _centroid(image: np.ndarray, y: float, x: float, radius: int = 4) -> tuple[float, float]:
    """Intensity-weighted centre (y, x), in continuous pixel coordinates, of the bright spot near (y, x)."""
    gray = image.astype(np.float64).mean(axis=2)
    r0, c0 = max(int(y) - radius, 0), max(int(x) - radius, 0)
    window = gray[r0 : int(y) + radius + 1, c0 : int(x) + radius + 1]
    window = np.where(window > 0.25 * window.max(), window, 0.0)
    rows, cols = np.indices(window.shape)
    return (
        r0 + (rows * window).sum() / window.sum() + 0.5,
        c0 + (cols * window).sum() / window.sum() + 0.5,
    )


# (height, width, dots as (row, column)): landscape, portrait, small square (upscaled), odd sizes
DOT_IMAGES = [
    (120, 200, [(10, 20), (60, 100), (110, 190)]),
    (150, 90, [(5, 80), (75, 45)]),
    (64, 64, [(32, 10)]),
    (101, 333, [(50, 300), (3, 3)]),
]


def test_each_point_lands_on_its_pixel(tmp_path, write_sources):
    """The point at the centre of each dot: decoded from its loc pair back through the resize-with-pad,
    within one location bin of the pixel; and the padded image has the dot where the loc pair says."""
    images = [_dots(h, w, dots) for h, w, dots in DOT_IMAGES]
    points = [[[c + 0.5, r + 0.5] for r, c in dots] for _, _, dots in DOT_IMAGES]
    _write(
        tmp_path / "pts",
        "dots",
        {
            "image": [{"bytes": _png(im), "path": None} for im in images],
            "points": points,
            "label": ["dot"] * len(images),
        },
        {"image": IMAGE, "points": PAIRS},
    )
    good, bad = _read(_sources(tmp_path, write_sources))
    assert not bad and len(good) == len(images)
    for item, image, want, (h, w, _) in zip(good, images, points, DOT_IMAGES, strict=True):
        (turn,) = item["turns"]
        assert turn["kind"] == "pointing" and turn["prompt"] == "point to dot" and turn["boxes"] is None
        decoded = parse_points(turn["target"])
        assert (
            len(decoded) == len(want) and turn["target"].count(" ; ") == len(want) - 1
        )  # one pair each, in order
        _, new_h, new_w, _, _ = RESIZE.geometry(h, w)
        bin_x, bin_y = (
            RESIZE.size / LOC_BINS * w / new_w,
            RESIZE.size / LOC_BINS * h / new_h,
        )  # a bin in pixels
        padded = RESIZE(image)
        stored = decode_jpeg(item["image"])
        for (y, x), (px, py) in zip(decoded, want, strict=True):
            bx, by = padded_to_point((y, x), h, w)
            assert abs(bx - px) <= bin_x and abs(by - py) <= bin_y, (h, w, (px, py), (bx, by))
            for picture, tolerance in (
                (padded, 0.4),
                (stored, 0.5),
            ):  # measured: within 0.3; a half-pixel slip of the convention moves 0.3-1.9
                cy, cx = _centroid(picture, y * RESIZE.size, x * RESIZE.size)
                assert abs(cy - y * RESIZE.size) <= tolerance and abs(cx - x * RESIZE.size) <= tolerance


def test_point_round_trip_through_the_pad():
    for h, w in ((120, 200), (150, 90), (224, 224), (7, 1000)):
        for x, y in ((0.0, 0.0), (w / 3, h / 2), (float(w), float(h))):
            yx = point_to_padded((x, y), h, w)
            assert padded_to_point(yx, h, w) == pytest.approx((x, y), abs=1e-9)
    text = point_text([(0.0, 0.5), (0.9999, 1.0)])
    assert text == "<loc0000><loc0512> ; <loc1023><loc1023>"


def test_the_pointing_sample_reads_as_pointing_turns(tmp_path, write_sources):
    generate_pointing(tmp_path / "gen")  # the generator writes the bundled bytes
    assert (tmp_path / "gen/web_points/points.parquet").read_bytes() == (
        SAMPLES / "web_points/points.parquet"
    ).read_bytes()
    good, bad = _read(_sources(tmp_path, write_sources, path=str(SAMPLES / "web_points")))
    assert not bad and len(good) == len(POINTS)
    ITEM.table(good)
    table = pq.read_table(SAMPLES / "web_points/points.parquet").to_pylist()
    for item, row, (_, label, _) in zip(good, table, POINTS, strict=True):
        (turn,) = item["turns"]
        assert turn["prompt"] == f"point to {label}"
        h, w = decode_jpeg(row["image"]["bytes"]).shape[:2]
        assert max(h, w) == SMALL_SIDE
        back = [padded_to_point(p, h, w) for p in parse_points(turn["target"])]
        assert len(back) == len(row["points"])
        for (bx, by), want in zip(back, row["points"], strict=True):  # within a bin: < 1 px here
            assert abs(bx - want["x"]) < 1 and abs(by - want["y"]) < 1


def test_a_question_is_the_prompt_and_rows_of_one_image_merge(tmp_path, write_sources):
    image = _png(_dots(40, 60, [(20, 30)]))
    _write(
        tmp_path / "pts",
        "q",
        {
            "image": [{"bytes": image, "path": None}] * 2,
            "points": [[{"x": 30.5, "y": 20.5}], [{"x": 1.0, "y": 2.0}, {"x": 59.0, "y": 39.0}]],
            "question": ["Where is the white dot?", "Point to the corners."],
        },
        {"image": IMAGE},
    )
    columns = "{image: image, points: points, question: question}"
    good, bad = _read(_sources(tmp_path, write_sources, columns))
    assert not bad and len(good) == 1
    assert [(t["kind"], t["prompt"]) for t in good[0]["turns"]] == [
        ("pointing", "Where is the white dot?"),
        ("pointing", "Point to the corners."),
    ]
    assert [len(parse_points(t["target"])) for t in good[0]["turns"]] == [1, 2]


def test_a_point_outside_the_image_quarantines_its_row(tmp_path, write_sources):
    images = [_png(_dots(40, 60, [(20, 30)])), _png(_dots(50, 50, [(2, 2)]))]
    _write(
        tmp_path / "pts",
        "out",
        {
            "image": [{"bytes": b, "path": None} for b in images],
            "points": [[[30.5, 20.5]], [[10.0, 10.0], [50.0, 50.5]]],  # y 50.5 on a 50-high image
            "label": ["dot", "dot"],
        },
        {"image": IMAGE, "points": PAIRS},
    )
    good, bad = _read(_sources(tmp_path, write_sources))
    assert len(good) == 1 and len(bad) == 1
    assert bad[0].source_file == "pts/out.parquet#1" and bad[0].field == "points"
    assert "pts/out.parquet#1 points[1] (x 50, y 50.5) lies outside the 50x50 image" in bad[0].reason


BAD_POINTS = [
    # (column values, arrow type, what the reason says)
    ([[[1.0, 2.0, 3.0]]], PAIRS, r"points\[0\] is list \[1.0, 2.0, 3.0\], not \{x, y\} or \[x, y\]"),
    (["[[1, 2]]"], pa.string(), r"points is str '\[\[1, 2\]\]', not a list"),
    ([[]], PAIRS, "points is empty: a pointing turn needs at least one point"),
    ([None], PAIRS, "points is null"),
    ([[[1.0, float("nan")]]], PAIRS, r"points\[0\] y is nan, not a finite number"),
    ([[[True, False]]], pa.list_(pa.list_(pa.bool_())), r"points\[0\] x is bool True, not a number"),
    (
        [[{"x": 1.0, "y": 2.0, "z": 3.0}]],
        pa.list_(pa.struct([("x", pa.float64()), ("y", pa.float64()), ("z", pa.float64())])),
        r"points\[0\] .* has fields \['x', 'y', 'z'\], not exactly x and y",
    ),
    ([[{"x": None, "y": 2.0}]], None, r"points\[0\] x is NoneType None, not a number"),
]


@pytest.mark.parametrize(("cell", "kind", "reason"), BAD_POINTS)
def test_malformed_points_are_refused_naming_the_row_never_coerced(
    tmp_path, write_sources, cell, kind, reason
):
    image = {"bytes": _png(_dots(40, 60, [(20, 30)])), "path": None}
    _write(
        tmp_path / "pts",
        "ok",
        {"image": [image], "points": [[[30.5, 20.5]]], "label": ["dot"]},
        {"image": IMAGE},
    )
    types = {"image": IMAGE} | ({"points": kind} if kind is not None else {})
    _write(tmp_path / "pts", "bad", {"image": [image], "points": cell, "label": ["dot"]}, types)
    good, bad = _read(_sources(tmp_path, write_sources))
    assert len(good) == 1 and len(bad) == 1 and bad[0].field == "points"
    assert bad[0].source_file == "pts/bad.parquet#0" and bad[0].reason.startswith("pts/bad.parquet#0 points")
    assert re.search(reason, bad[0].reason), bad[0].reason


def test_an_empty_label_is_refused(tmp_path, write_sources):
    _write(
        tmp_path / "pts",
        "nolabel",
        {
            "image": [{"bytes": _png(_dots(40, 60, [(20, 30)])), "path": None}],
            "points": [[[1.0, 1.0]]],
            "label": [None],
        },
        {"image": IMAGE, "points": PAIRS},
    )
    good, bad = _read(_sources(tmp_path, write_sources))
    assert not good and "pts/nolabel.parquet#0 label is empty" in bad[0].reason and bad[0].field == "text"


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        ("{points: points}", "with neither label nor question"),
        ("{points: points, label: l, question: q}", "with both label and question"),
        ("{points: points, question: q, answer: a}", "maps points and answer"),
        ("{caption: c, label: l}", "maps label .* but not points"),
    ],
)
def test_pointing_columns_are_checked_at_load(tmp_path, write_sources, columns, match):
    with pytest.raises(ConfigError, match=match):
        load_sources(_sources(tmp_path, write_sources, columns))
