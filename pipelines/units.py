"""What an engine runs per element, whatever the dataset kind: an extract unit (a robot episode, a batch
of web items) and a build unit (a robot episode's samples, an annotation's spans over one episode, a file
of web items). The engines (beam_jobs.py, ray_jobs.py) only call these methods and move results around;
they never look at a unit's type."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from vlamix.schemas.quarantine import QuarantineRecord

if TYPE_CHECKING:
    from vlamix.pipelines.options import ErrorPolicy
    from vlamix.pipelines.sample import Sample

__all__ = ["BuildUnit", "ExtractUnit", "Extraction", "PlacedSample", "SummaryUnit"]


@dataclass(frozen=True)
class Extraction:
    """What one extract unit gave: its written units' outcome records (ExtractedEpisode / ExtractedItem),
    its quarantined ones, and the engine counters it adds to (per dataset)."""

    results: list
    quarantined: list[QuarantineRecord]
    counters: dict[str, int] = field(default_factory=dict)


class ExtractUnit(Protocol):
    @property
    def dataset(self) -> str: ...

    @property
    def out(self) -> str:
        """The layout root (where its progress marker goes)."""
        ...

    @property
    def name(self) -> str:
        """Unique among the step's units (its progress marker)."""
        ...

    @property
    def expected_frames(self) -> int | None:
        """The frames (web: items) it will read, when the listing knew them; else None (progress)."""
        ...

    def extract(self, policy: ErrorPolicy) -> Extraction: ...


# (shard, position in the shard, sample): where the shard writer puts one built sample
PlacedSample = tuple[int, int, "Sample"]


class BuildUnit(Protocol):
    out: str

    @property
    def dataset(self) -> str:
        """The dataset whose shards the samples go to."""
        ...

    @property
    def unit(self) -> str:
        """The unit's name, unique within its dataset (names its spill files)."""
        ...

    @property
    def expected_frames(self) -> int | None:
        """The samples it will hand on, when known before it runs; else None (progress)."""
        ...

    def samples(self) -> Iterator[PlacedSample]:
        """The unit's samples that go into shards not yet built; raises BadRecord when the samples'
        quality gate refuses the unit."""
        ...


class SummaryUnit(Protocol):
    """A unit that summarizes its part of the data into a file of its own (the stats step's passes: the
    driver merges the files); `run` returns the file written."""

    dataset: str

    def run(self) -> str: ...
