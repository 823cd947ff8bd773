"""Quality gates with great_expectations (an ephemeral context: offline, nothing written but the reports).

Two levels:
- Row level, in the workers: each extracted episode's frames (or batch of web items) are validated against
  its kind's suite (schemas/expectations.py), vectorized (schemas/row_checks.py: great_expectations'
  semantics, without its import or its per-suite cost in every worker). A failing row quarantines its
  episode (or item) with the expectation, column and row named.
- Dataset level, in the driver: a suite over the gate outcomes (one row per episode or item: did it pass)
  expects passing rows with `mostly = 1 - max_bad_share`. A dataset above that share of failures fails
  the job (after the manifest is written: nothing is lost). Its Data Docs HTML lands in
  `reports/quality/`.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd

from vlamix.schemas.row_checks import Expect

__all__ = ["DOCS_DIR", "Failure", "QualityGateFailed", "dataset_gates", "failures", "gx_failures"]

DOCS_DIR = "reports/quality"
GATE_PREFIX = "quality gate: "


class QualityGateFailed(RuntimeError):
    """Datasets whose share of rows failing the quality gates is above the allowed one."""


@dataclass(frozen=True)
class Failure:
    expectation: str
    column: str | None
    row: int
    value: object

    def reason(self) -> str:
        where = f" on {self.column}" if self.column else ""
        return f"{GATE_PREFIX}{self.expectation} failed{where} (value {self.value!r})"


def _quiet() -> None:
    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.ERROR)


@cache
def _context():
    """One ephemeral context per process (Beam and Ray workers build theirs once)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    _quiet()
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return ctx


@cache
def _batch_definition(name: str):
    ctx = _context()
    source = ctx.data_sources.add_pandas(f"rows_{name}")
    return source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")


Locate = Callable[[int, str | None, object], tuple[int, str | None, object]]


def failures(
    df: pd.DataFrame, suite_name: str, expectations: list[Expect], locate: Locate | None = None
) -> list[Failure]:
    """Check `df` against the expectations, vectorized (schemas/row_checks.py): every failing
    (expectation, row), first row first. `locate` maps a failing table row, its expectation's column and
    the value to the (row, column, value) to report, for tables in another shape than the records
    (schemas/expectations.py's dim_table). `suite_name` names the suite in errors."""
    if df.empty:
        return []
    out = []
    for e in expectations:
        if e.column not in df.columns:
            raise KeyError(f"{suite_name}: {e.type} checks column {e.column!r}, which the table lacks")
        column = df[e.column]
        rows = e.unexpected(column)
        for row, value in zip(rows.tolist(), column.iloc[rows].tolist(), strict=True):
            at, col, val = locate(row, e.column, value) if locate else (row, e.column, value)
            out.append(Failure(e.type, col, at, val))
    return sorted(out, key=lambda f: (f.row, f.expectation, f.column or ""))


def gx_failures(
    df: pd.DataFrame, suite_name: str, expectations: list[Expect], locate: Locate | None = None
) -> list[Failure]:
    """`failures`, computed by great_expectations' own validation of the same suite (ten times slower per
    table, and an import of seconds): the reference the vectorized checks are held to in the tests."""
    import great_expectations as gx

    if df.empty:
        return []
    suite = gx.ExpectationSuite(name=suite_name, expectations=[e.to_gx() for e in expectations])
    batch = _batch_definition(re.sub(r"\W", "_", suite_name)).get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    out = []
    for r in result.results:
        if r.success:
            continue
        column = r.expectation_config.kwargs.get("column")
        rows = r.result.get("unexpected_index_list") or []
        values = r.result.get("unexpected_list") or [None] * len(rows)
        if not rows and r.exception_info and r.exception_info.get("raised_exception"):
            raise RuntimeError(f"{suite_name}: {r.expectation_config.type} raised: {r.exception_info}")
        for row, value in zip(rows, values, strict=False):
            at, col, val = locate(int(row), column, value) if locate else (int(row), column, value)
            out.append(Failure(r.expectation_config.type, col, at, val))
    return sorted(out, key=lambda f: (f.row, f.expectation, f.column or ""))


def dataset_gates(report_dir: Path, outcomes: dict[str, pd.DataFrame], max_bad_share: float) -> dict:
    """Per dataset, the share of gate-failing rows against `max_bad_share`, validated with a checkpoint
    whose Data Docs go to `report_dir`. `outcomes[name]` has a boolean `passed` column and an `id`
    column. Returns {name: {"rows", "failed", "share", "success"}}."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.checkpoint import UpdateDataDocsAction

    ctx = _context()
    shutil.rmtree(report_dir, ignore_errors=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    site = "vlamix_quality"
    ctx.add_data_docs_site(
        site_name=site,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(report_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    summary = {}
    try:
        for name, df in sorted(outcomes.items()):
            source = ctx.data_sources.add_or_update_pandas(f"gates_{name}")
            batch_def = source.add_dataframe_asset(f"{name}_outcomes").add_batch_definition_whole_dataframe(
                "all"
            )
            suite = ctx.suites.add_or_update(
                gx.ExpectationSuite(
                    name=f"{name}_quality_gates",
                    expectations=[
                        gxe.ExpectColumnValuesToBeInSet(
                            column="passed", value_set=[True], mostly=1.0 - max_bad_share
                        )
                    ],
                )
            )
            validation = ctx.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=f"{name}_quality_gates", data=batch_def, suite=suite)
            )
            checkpoint = ctx.checkpoints.add_or_update(
                gx.Checkpoint(
                    name=f"{name}_checkpoint",
                    validation_definitions=[validation],
                    actions=[UpdateDataDocsAction(name="docs", site_names=[site])],
                    result_format={"result_format": "SUMMARY"},
                )
            )
            frame = df if not df.empty else pd.DataFrame({"id": [], "passed": pd.Series([], dtype=bool)})
            result = checkpoint.run(batch_parameters={"dataframe": frame})
            failed = int((~frame["passed"]).sum())
            summary[name] = {
                "rows": len(frame),
                "failed": failed,
                "share": round(failed / len(frame), 6) if len(frame) else 0.0,
                "success": bool(result.success),
            }
    finally:
        ctx.delete_data_docs_site(site)
    return summary
