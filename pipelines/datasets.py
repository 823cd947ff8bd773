"""The datasets of a sources file as their kinds' owners (pipelines/kinds.py), in one fixed order."""

from __future__ import annotations

from vlamix.pipelines.annotation_kind import AnnotationDataset
from vlamix.pipelines.kinds import DatasetKind
from vlamix.pipelines.robot_kind import RobotDataset
from vlamix.pipelines.web_kind import WebDataset
from vlamix.sources.config import SourcesFile

__all__ = ["kinds_of", "robot_datasets"]


def kinds_of(sources: SourcesFile) -> list[DatasetKind]:
    """Every dataset of `sources`: robot datasets first, then annotations, then web data."""
    return [
        *robot_datasets(sources),
        *(AnnotationDataset(sources, a) for a in sources.annotations),
        *(WebDataset(sources, w) for w in sources.web),
    ]


def robot_datasets(sources: SourcesFile) -> list[RobotDataset]:
    return [RobotDataset(sources, s) for s in sources.datasets]
