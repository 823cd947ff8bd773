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
