"""The benchmark harness itself (not a timed test): ratios and goals read the right way round, and a
report is written with its table, JSON and plots."""

from __future__ import annotations

import json

from benchmarks.common import Result
from benchmarks.report import write_results


def test_ratios_goals_and_ceilings():
    faster = Result("x", "rate", "items/s", 30.0, 10.0, "base", goal=3.0)
    slower = Result("x", "time", "s", 2.0, 1.0, "base", goal=1.0, lower_is_better=True)
    share = Result("x", "wait", "share", 0.05, None, "", ceiling=0.02)
    assert faster.ratio == 3.0 and faster.met is True
    assert slower.ratio == 0.5 and slower.met is False
    assert share.ratio is None and share.met is False


def test_report_writes_table_json_and_plots(tmp_path):
    results = [Result("fast", "encode", "chunks/s", 9.0, 3.0, "per chunk", goal=3.0, note="n")]
    scaling = [
        {"frames": f, "wall_s": f / 100, "max_process_rss_mib": 700.0, "driver_peak_rss_mib": 690.0}
        for f in (100, 400, 1600)
    ]
    write_results(tmp_path, results, scaling, 12.0)
    table = (tmp_path / "RESULTS.md").read_text()
    assert "| fast | encode | 9 chunks/s | 3 (per chunk) | 3 | yes (3) |" in table
    assert json.loads((tmp_path / "results.json").read_text())["results"][0]["met"] is True
    assert (tmp_path / "plots" / "ratios.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "scaling.png").stat().st_size > 1000


def test_peers_resized_copy_keeps_everything_but_the_frame_size(tmp_path):
    """bench-peers' copies of the MM episodes: every frame a JPEG of the new size, /compress_len its
    lengths, every other dataset and attribute as it was (both loaders read exactly these files)."""
    import io

    import h5py
    import numpy as np
    import pytest
    from PIL import Image

    from benchmarks.peers.run import EPISODES, parse_size, resize_episode

    assert parse_size("48x64") == (48, 64) and parse_size("native") is None
    with pytest.raises(Exception, match="expected HxW"):
        parse_size("640")
    src, dst = EPISODES / "episode_0.hdf5", tmp_path / "episode_0.hdf5"
    resize_episode(src, dst, (48, 64))
    with h5py.File(src) as a, h5py.File(dst) as b:
        assert dict(a.attrs) == dict(b.attrs)
        for name in (
            "action",
            "base_action",
            "observations/qpos",
            "observations/qvel",
            "observations/effort",
        ):
            np.testing.assert_array_equal(a[name][()], b[name][()])
        cams = list(a["observations/images"])
        assert cams == list(b["observations/images"])
        lengths = b["compress_len"][()]
        assert lengths.shape == a["compress_len"].shape
        for row, cam in enumerate(cams):
            frames = b[f"observations/images/{cam}"]
            assert len(frames) == len(a[f"observations/images/{cam}"])
            for i in (0, len(frames) - 1):
                data = frames[i].tobytes()[: lengths[row, i]]
                with Image.open(io.BytesIO(data)) as im:
                    assert (im.format, im.size) == ("JPEG", (64, 48))
                assert data.endswith(b"\xff\xd9")  # the stated length is the whole JPEG, no padding
