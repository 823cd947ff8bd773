"""Datasets that fail as a whole (their listing or configuration: a web source whose files cannot be
listed, an embodiment spec that does not load, a LeRobot rate that disagrees with its spec): each is
recorded with its reason, every other dataset is still built, the manifest lists it under `failed`
with its quarantine file, and the ingest ends with a non-zero exit code."""

from __future__ import annotations

import dataclasses

from vlamix.schemas.quarantine import QuarantineRecord
from vlamix.shards.layout import QUARANTINE_PATH
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir
from vlamix.sources.config import SourcesFile

__all__ = [
    "DatasetsFailed",
    "failed_entries",
    "live_sources",
    "record_failures",
]


class DatasetsFailed(RuntimeError):
    """Datasets that could not be read at all; the others were built and the manifest names both."""


def _kind_and_path(sources: SourcesFile, name: str) -> tuple[str, str]:
    for src in [*sources.datasets, *sources.annotations]:
        if src.name == name:
            return src.kind, src.path
    w = next(w for w in sources.web if w.name == name)
    return "WD", w.path or w.images or ""


def record_failures(store: Store, sources: SourcesFile, failures: dict[str, str]) -> dict[str, str]:
    """Write the failures of this extract (an annotation dataset fails with its robot dataset)."""
    failures = {k: _relative(v, sources, k) for k, v in failures.items()}
    for a in sources.annotations:
        if a.dataset in failures and a.name not in failures:
            failures[a.name] = f"the robot dataset {a.dataset!r} it annotates failed: {failures[a.dataset]}"
    store.write_json(WorkDir.FAILED, dict(sorted(failures.items())))
    return failures


def _relative(reason: str, sources: SourcesFile, name: str) -> str:
    """The reason naming files relative to the sources file, as the quarantine does (the same text on
    any machine, no absolute path in the manifest), without the prefix the manifest's key repeats."""
    root = str(sources.root)
    reason = reason.replace(f"{sources.path}: ", "").replace(f"dataset {name!r}: ", "", 1)
    return reason.replace(f" (under {root})", "").replace(root + "/", "").replace(root, ".")


def live_sources(sources: SourcesFile, failed: dict[str, str]) -> SourcesFile:
    """The sources file without its failed datasets: the later steps never see them."""
    return dataclasses.replace(
        sources,
        datasets=[s for s in sources.datasets if s.name not in failed],
        annotations=[a for a in sources.annotations if a.name not in failed],
        web=[w for w in sources.web if w.name not in failed],
    )


def failed_entries(store: Store, sources: SourcesFile, failed: dict[str, str]) -> dict[str, dict]:
    """The manifest's `failed` section: per dataset its kind, reason and quarantine file (one record)."""
    out = {}
    for name, reason in sorted(failed.items()):
        kind, path = _kind_and_path(sources, name)
        rel = QUARANTINE_PATH.format(dataset=name)
        store.write_text(rel, QuarantineRecord(name, path, f"dataset failed: {reason}").to_json() + "\n")
        out[name] = {"kind": kind, "reason": reason, "quarantine": rel}
    return out
