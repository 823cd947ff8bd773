"""The dataset-level quality gates, after the manifest: per dataset, the share of its units (episodes or
items) that failed the row-level gates, against `--max-bad-share`; Data Docs in `reports/quality/`."""

from __future__ import annotations

import tempfile
from pathlib import Path

from vlamix.pipelines.datasets import kinds_of
from vlamix.pipelines.options import IngestOptions
from vlamix.pipelines.quality import DOCS_DIR, dataset_gates
from vlamix.sources.config import SourcesFile

__all__ = ["gate_message", "quality_gates"]


def quality_gates(opts: IngestOptions, sources: SourcesFile) -> dict:
    """{dataset: {"rows", "failed", "share", "success"}} of every dataset with row-level gates."""
    work = opts.work
    outcomes = {k.name: rows for k in kinds_of(sources) if (rows := k.gate_rows(work)) is not None}
    local = opts.store.local()
    if local is not None:
        return dataset_gates(local / DOCS_DIR, outcomes, opts.max_bad_share)
    with tempfile.TemporaryDirectory() as tmp:  # Data Docs are written locally, then uploaded
        summary = dataset_gates(Path(tmp), outcomes, opts.max_bad_share)
        opts.store.rmtree(DOCS_DIR)
        opts.store.put_dir(tmp, DOCS_DIR)
    return summary


def gate_message(quality: dict, opts: IngestOptions, prefix: str) -> str:
    """The failed gates as one message ("" when every gate passed)."""
    failed = {k: v for k, v in quality.items() if not v["success"]}
    if not failed:
        return ""
    return prefix + (
        "quality gate failed: "
        + "; ".join(
            f"{k}: {v['failed']} of {v['rows']} rows failed ({v['share']:.1%}, at most {opts.max_bad_share:.1%} allowed)"
            for k, v in failed.items()
        )
        + f". The failing rows are in {opts.url}/quarantine/<dataset>.jsonl, the report in {opts.url}/{DOCS_DIR}/index.html"
    )
