"""metrics.csv across a resume at another number of processes, and from a run written before the input
costs were measured: the fixed columns must match, the per-rank and input-cost columns are merged, and
rows keep their values under the merged header."""

from __future__ import annotations

import csv

import pytest

from vlamix.trainer.metrics import BASE_COLUMNS, MetricsLog


def _write(path, header, rows):
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def _read(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_two_process_csv_resumed_by_one_keeps_rank_one_and_drops_later_rows(tmp_path):
    MetricsLog(tmp_path, ["d"], False, 0, processes=2).close()
    header = next(csv.reader((tmp_path / "metrics.csv").open()))
    rank1 = header.index("data_wait/rank1")

    def row(step: int) -> list[str]:
        cells = [""] * len(header)
        cells[0], cells[rank1] = str(step), "0.5"
        return cells

    _write(tmp_path / "metrics.csv", header, [row(1), row(2), row(3)])
    log = MetricsLog(tmp_path, ["d"], False, 2, processes=1)
    log.write({"step": 3, "data_wait/rank0": 0.1})
    log.close()
    rows = _read(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert [r["data_wait/rank1"] for r in rows] == ["0.5", "0.5", ""] and rows[2]["data_wait/rank0"] == "0.1"


def test_a_csv_from_before_the_input_costs_resumes_and_another_runs_does_not(tmp_path):
    old = [c for c in BASE_COLUMNS if c not in ("fetched_bytes", "cache_hit_rate")] + ["ce/d"]
    _write(tmp_path / "metrics.csv", old, [["1"] + ["7"] * (len(old) - 1)])
    log = MetricsLog(tmp_path, ["d"], False, 1)
    log.close()
    (kept,) = _read(tmp_path / "metrics.csv")
    assert kept["ce/d"] == "7" and kept["fetched_bytes"] == "" and "data_wait/rank0" in kept
    _write(tmp_path / "metrics.csv", [*old[:-1], "ce/other"], [["1"] + ["7"] * (len(old) - 1)])
    with pytest.raises(ValueError, match="another run's"):
        MetricsLog(tmp_path, ["d"], False, 1)
