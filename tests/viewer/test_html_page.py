"""The web page's files, without a browser: self-contained (nothing from a network), deterministic, the
stated decimation rule, and the accounting and quarantine reasons in the episode list."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from view_kit import View, built_views, index_rows, page_data

from vlamix.schemas.quarantine import QuarantineRecord
from vlamix.viewer.episodes import MAX_PAGE_FRAMES, decimate
from vlamix.viewer.run import run_view


@pytest.fixture(scope="session")
def views(bundled, tmp_path_factory) -> dict[str, View]:
    return built_views(bundled, tmp_path_factory)


@pytest.mark.parametrize("n", [1, 7, 199, 200, 201, 645, 662, 10_000])
def test_decimation_rule(n):
    kept, step = decimate(list(range(n)))
    assert step == -(-n // MAX_PAGE_FRAMES) and kept == list(range(0, n, step))
    assert 0 < len(kept) <= MAX_PAGE_FRAMES and kept[0] == 0


def test_page_is_self_contained_and_decimated(views, bundled):
    for kind, v in views.items():
        text = (v.html / "index.html").read_text()
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), kind  # no CDN, no server
        assert "<link" not in text and "@import" not in text, kind
        data = page_data(v.html)
        for ep in data["episodes"]:
            for f in ep["frames"]:
                assert all((v.html / path).is_file() for path in f["img"].values()), kind
    v = views["MM"]
    ep = page_data(v.html)["episodes"][0]
    rows = sorted((r for r in index_rows(bundled, v.dataset) if r["episode"] == 1), key=lambda r: r["frame"])
    kept, step = decimate(rows)
    assert step == 4 and len(rows) == 662  # the bundled episode: 662 samples -> every 4th
    assert [f["key"] for f in ep["frames"]] == [r["key"] for r in kept]
    assert ep["note"] == f"one sample in 4 of 662 (step = ceil(662 / {MAX_PAGE_FRAMES})), {len(kept)} shown"
    assert len(ep["series"]["state"][0]) == len(kept) == len(ep["series"]["fast"][-1])


def test_page_is_deterministic(views, bundled, tmp_path):
    v = views["CE"]
    run_view(str(bundled), v.dataset, v.episodes, html=tmp_path / "again")
    assert (tmp_path / "again" / "index.html").read_bytes() == (v.html / "index.html").read_bytes()
    assert sorted(p.name for p in (tmp_path / "again" / "img").iterdir()) == sorted(
        p.name for p in (v.html / "img").iterdir()
    )


def test_accounting_and_quarantine_reasons(bundled, tmp_path):
    """A layout whose widowx_sim lost an episode to the quarantine: the page lists the record with its
    reason, and the episode list shows the episode as quarantined beside the written ones."""
    layout = tmp_path / "layout"
    layout.mkdir()
    for entry in bundled.iterdir():
        if entry.name != "quarantine":
            (layout / entry.name).symlink_to(entry)
    shutil.copytree(bundled / "quarantine", layout / "quarantine")
    record = QuarantineRecord(
        "widowx_sim",
        "widowx/episode_6.tfrecord",
        "state is NaN at frame 3",
        episode=6,
        frame=3,
        field="state",
    )
    (layout / "quarantine" / "widowx_sim.jsonl").write_text(record.to_json() + "\n")
    summary = run_view(str(layout), "widowx_sim", [0], html=tmp_path / "page")
    text = (tmp_path / "page" / "index.html").read_text()
    quarantine = text[text.index('<table id="quarantine-list">') :].split("</table>")[0]
    assert "state is NaN at frame 3" in quarantine and "widowx/episode_6.tfrecord" in quarantine
    episodes = text[text.index('<table id="episode-list">') :].split("</table>")[0]
    assert re.search(
        r'<tr class="quarantined"><td>6</td><td>quarantined</td>.*state is NaN at frame 3', episodes
    )
    assert episodes.count("data-ep=") == 1 and episodes.count('class="off"') == 5  # 1 shown, 5 not
    manifest = json.loads((bundled / "manifest.json").read_text())
    accounting = text[text.index('<table id="accounting">') :].split("</table>")[0]
    for key, value in manifest["datasets"]["widowx_sim"]["accounting"].items():
        assert f"<th>{key}</th>" in accounting and f"<td>{value}</td>" in accounting
    assert summary["html"]["episodes"] == 1
