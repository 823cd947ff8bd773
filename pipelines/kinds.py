"""One owner per dataset kind. A robot dataset (MM / ME / CE), an annotation dataset (HL / VI over a
robot dataset) and a web dataset (WD) each list their extract units, make their build units, account
for every input unit in their manifest entry, and give their rows of the quality gate. `vlamix ingest`,
the index step and the gates loop over `kinds_of(sources)` (pipelines/datasets.py); nothing else asks what kind a dataset is."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from vlamix.pipelines.options import IngestOptions
    from vlamix.pipelines.units import BuildUnit, ExtractUnit
    from vlamix.shards.workdir import WorkDir
    from vlamix.sources.config import SourcesFile

__all__ = ["DatasetKind", "Overlap", "gate_frame"]

# (unit, content hashes) a dataset's written units have: compared across datasets for the manifest's
# `cross_dataset_duplicates`
Overlap = tuple[str, set[str]]


def gate_frame(passed: list[str], failed: list[str]) -> pd.DataFrame:
    """The quality gate's rows of one dataset: one per unit, with whether it passed the row-level gates."""
    return pd.DataFrame({"id": passed + failed, "passed": [True] * len(passed) + [False] * len(failed)})


class DatasetKind(ABC):
    """One dataset of the sources file, seen by the steps of the ingest."""

    name: str
    sources: SourcesFile

    def extract_units(self, opts: IngestOptions) -> list[ExtractUnit]:
        """The units the engine extracts (also clears what an earlier extract of the dataset left);
        raises ConfigError when the dataset cannot be listed at all."""
        return []

    def after_extract(self, opts: IngestOptions) -> None:
        """Driver-side work once the engine has extracted every dataset (none by default)."""
        return None

    @abstractmethod
    def build_units(self, opts: IngestOptions) -> list[BuildUnit]:
        """The units that build the dataset's shards (none when nothing is left to build)."""

    @abstractmethod
    def manifest_entry(self, work: WorkDir) -> dict:
        """The dataset's manifest entry: accounting (checked), shards, index; writes its quarantine file."""

    def overlap(self, work: WorkDir) -> Overlap | None:
        return None

    def gate_rows(self, work: WorkDir) -> pd.DataFrame | None:
        """One row per unit read: did it pass the row-level gates (None: the kind has no gate)."""
        return None
