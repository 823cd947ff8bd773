"""The web page of `vlamix view --html`, opened from disk in a real headless Chromium (Debian's `chromium`,
driven by Playwright over the DevTools protocol): the first frame's cameras load, the scrubber moves the
shown frame, the texts and every plot's cursor, nothing is fetched from a network, and a screenshot is
not blank. Skips with the reason when no Chromium is installed (`apt-get install chromium`)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from view_kit import View, built_views, page_data


@pytest.fixture(scope="session")
def views(bundled, tmp_path_factory) -> dict[str, View]:
    return built_views(bundled, tmp_path_factory)


BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM = os.environ.get("VLAMIX_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium found (install Debian's: apt-get install -y chromium; or set VLAMIX_CHROMIUM)",
)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


def _open(browser, page_dir: Path):
    """The page loaded from disk, with every request and script error it made."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    seen = {"requests": [], "errors": []}
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.goto((page_dir / "index.html").as_uri())
    page.wait_for_function(
        "document.querySelector('#cameras img') && document.querySelector('#cameras img').complete"
    )
    return page, seen


def _state(page) -> dict:
    return page.evaluate(
        """() => ({
        label: document.getElementById('frame-label').textContent,
        images: [...document.querySelectorAll('#cameras img')].map((i) => ({
            id: i.id, src: i.getAttribute('src'), width: i.naturalWidth, height: i.naturalHeight})),
        cursors: [...document.querySelectorAll('line.cursor')].map((l) => +l.getAttribute('x1')),
        paths: document.querySelectorAll('svg path').length,
        texts: Object.fromEntries([...document.querySelectorAll('#texts dd')].map((d) => [d.id, d.textContent])),
        title: document.getElementById('episode-title').textContent,
    })"""
    )


def _move(page, k: int) -> None:
    page.eval_on_selector("#scrubber", "(s, k) => { s.value = k; s.dispatchEvent(new Event('input')); }", k)


def test_scrubber_moves_frame_cameras_texts_and_cursors(browser, views):
    v = views["MM"]
    data = page_data(v.html)
    frames = data["episodes"][0]["frames"]
    page, seen = _open(browser, v.html)
    first = _state(page)
    assert first["title"] == "episode 1"
    assert {i["id"] for i in first["images"]} == {f"cam-{s}" for s in frames[0]["img"]}
    for img in first["images"]:  # the first frame's own files, loaded at the model's size
        assert img["src"] == frames[0]["img"][img["id"][4:]]
        assert (img["width"], img["height"]) == (224, 224)
    n_plots = len(data["state_dims"]) + len(data["action_dims"])
    assert len(first["cursors"]) == n_plots and first["paths"] == len(data["state_dims"]) + 2 * len(
        data["action_dims"]
    )
    assert first["texts"]["text-prompt"] == frames[0]["prompt"]

    k = len(frames) * 2 // 3
    _move(page, k)
    page.wait_for_function("[...document.querySelectorAll('#cameras img')].every((i) => i.complete)")
    moved = _state(page)
    assert f"frame {frames[k]['f']}," in moved["label"] and f"frame {frames[0]['f']}," in first["label"]
    assert [i["src"] for i in moved["images"]] == [frames[k]["img"][i["id"][4:]] for i in moved["images"]]
    assert [i["src"] for i in moved["images"]] != [i["src"] for i in first["images"]]
    assert all(i["width"] == 224 for i in moved["images"])
    assert all(b > a for a, b in zip(first["cursors"], moved["cursors"], strict=True))  # later in time: right
    assert moved["texts"]["text-subtask"] == frames[k]["subtask"] and frames[k]["subtask"]
    assert moved["texts"]["text-instruction"] == frames[k]["instruction"]

    from PIL import Image

    shot = np.asarray(Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB"))
    colors = np.unique(shot.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32))
    assert shot.std() > 20 and len(colors) > 500  # not blank: the cameras and plots are in it
    assert seen["errors"] == []
    assert all(u.startswith("file://") for u in seen["requests"]), [
        u for u in seen["requests"] if not u.startswith("file:")
    ]
    page.close()


def test_every_kind_opens_offline(browser, views):
    for kind, v in views.items():
        page, seen = _open(browser, v.html)
        state = _state(page)
        assert seen["errors"] == [], kind
        assert state["images"] and all(i["width"] == 224 for i in state["images"]), kind
        assert all(u.startswith("file://") for u in seen["requests"]), kind
        if kind == "WD":
            assert state["title"] == "items" and state["paths"] == 0
            assert "→" in state["texts"]["text-turns"]
        if kind == "CE":  # two episodes: a click on the second row shows it
            page.click('#episode-list tr[data-ep="1"]')
            assert _state(page)["title"] == f"episode {v.episodes[1]}"
        page.close()
