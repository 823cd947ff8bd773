"""`vlamix view` as a command: a layout at a URL (the real HTTP server of tests/servers.py, through the
trainer's shard cache), the file written when no viewer can be spawned, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from servers import http_server
from typer.testing import CliRunner
from view_kit import View, built_views, page_data, recordings

from vlamix.cli import app


@pytest.fixture(scope="session")
def views(bundled, tmp_path_factory) -> dict[str, View]:
    return built_views(bundled, tmp_path_factory)


def _run(*args: str):
    return CliRunner().invoke(app, ["view", *args])


def test_layout_at_a_url_through_the_shard_cache(views, bundled, tmp_path, monkeypatch):
    monkeypatch.setenv("VLAMIX_CACHE", str(tmp_path / "assets"))  # the tokenizer set's copy
    v = views["CE"]
    with http_server(bundled.parent) as url:
        result = _run(
            f"{url}/{bundled.name}", "--dataset", v.dataset, "--episode", str(v.episodes[0]),
            "--rrd", str(tmp_path / "url.rrd"), "--html", str(tmp_path / "page"),
            "--cache", str(tmp_path / "cache"), "--json",
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["layout"] == f"{url}/{bundled.name}"
    remote = recordings(tmp_path / "url.rrd")
    local = recordings(v.rrd)
    rid = f"{v.dataset}/episode_{v.episodes[0]:06d}"
    assert list(remote) == [rid]
    for path, rows in local[rid].rows.items():
        if path.startswith(("/state", "/action")):
            np.testing.assert_array_equal(remote[rid].scalars(path)[1], local[rid].scalars(path)[1])
        else:
            assert [{k: r[k] for k in r if k != "rerun.controls.RowId"} for r in remote[rid].rows[path]] == [
                {k: r[k] for k in r if k != "rerun.controls.RowId"} for r in rows
            ], path
    manifest = json.loads((bundled / "manifest.json").read_text())
    shard = manifest["datasets"][v.dataset]["shards"][0]
    copies = list((tmp_path / "cache").glob(f"*/{shard['path']}"))  # the whole shard, verified, cached
    assert len(copies) == 1 and copies[0].stat().st_size == shard["bytes"]
    remote_page, local_page = page_data(tmp_path / "page"), page_data(v.html)  # the same data, from the URL
    assert remote_page == {**local_page, "episodes": local_page["episodes"][:1]}


def test_without_a_display_the_recording_goes_to_a_file(bundled, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = _run(str(bundled), "--dataset", "web_points")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "vlamix_view_web_points.rrd").is_file()
    assert "no display here" in result.stdout and "rerun vlamix_view_web_points.rrd" in result.stdout
    assert list(recordings(tmp_path / "vlamix_view_web_points.rrd")) == ["web_points/items"]


def _error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_one_line_errors(bundled, tmp_path):
    rrd = str(tmp_path / "x.rrd")
    assert "did you mean 'widowx_sim'?" in _error(
        _run(str(bundled), "--dataset", "widowx_simm", "--rrd", rrd)
    )
    assert "has no episode 42" in _error(
        _run(str(bundled), "--dataset", "widowx_sim", "--episode", "42", "--rrd", rrd)
    )
    assert "leave out --episode" in _error(
        _run(str(bundled), "--dataset", "web_coco", "--episode", "0", "--rrd", rrd)
    )
    assert "no manifest" in _error(_run(str(tmp_path), "--dataset", "widowx_sim", "--rrd", rrd))
    assert not (tmp_path / "x.rrd").exists()


def test_a_damaged_shard_is_named(bundled, tmp_path):
    """One flipped byte in a sample: the crc32 of the index catches it, and the error names the shard,
    the byte range and the sample."""
    layout = tmp_path / "layout"
    layout.mkdir()
    for entry in bundled.iterdir():
        if entry.name != "shards":
            (layout / entry.name).symlink_to(entry)
    shutil.copytree(bundled / "shards" / "widowx_sim", layout / "shards" / "widowx_sim")
    manifest = json.loads((bundled / "manifest.json").read_text())
    for name in manifest["datasets"]:
        if name != "widowx_sim":
            (layout / "shards" / name).symlink_to(bundled / "shards" / name)
    shard = layout / manifest["datasets"]["widowx_sim"]["shards"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    line = _error(_run(str(layout), "--dataset", "widowx_sim", "--episode", "0", "--episode", "1",
                       "--episode", "2", "--episode", "3", "--episode", "4", "--episode", "5",
                       "--rrd", str(tmp_path / "x.rrd"), "--html", str(tmp_path / "page")))  # fmt: skip
    assert "widowx_sim-000000.tar bytes " in line and "(sample widowx_sim/" in line and "crc32" in line
    assert not (tmp_path / "x.rrd").exists() and not (tmp_path / "page").exists()  # nothing half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout"]  # no staging folder left behind
