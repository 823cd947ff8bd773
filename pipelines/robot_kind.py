"""Robot datasets (MM / ME / CE): episodes listed by their format's reader, extracted to frame Parquet,
built into samples through the embodiment's chain, accounted for in episodes and frames."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import pandas as pd

from vlamix.config import ConfigError
from vlamix.pipelines.build_plan import plan_units, prepare_dataset
from vlamix.pipelines.entries import file_ref, shard_entries, write_quarantine
from vlamix.pipelines.kinds import DatasetKind, Overlap, gate_frame
from vlamix.pipelines.options import IngestOptions
from vlamix.pipelines.quality import GATE_PREFIX
from vlamix.pipelines.robot_build import EpisodeBuild
from vlamix.pipelines.robot_extract import EpisodeExtract
from vlamix.pipelines.tokenizer_cache import tokenizer_set_at
from vlamix.pipelines.units import BuildUnit, ExtractUnit
from vlamix.schemas.embodiment import Embodiment
from vlamix.schemas.outcome import ExtractedEpisode
from vlamix.schemas.quarantine import QuarantineRecord
from vlamix.shards.layout import EMBODIMENT_PATH, STATS_PATH
from vlamix.shards.manifest import Accounting
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir
from vlamix.sources.config import RobotSource, SourcesFile
from vlamix.sources.environment import environment_field, environment_of
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.fields import FieldError
from vlamix.sources.readers import EPISODE_IDS, reader_for
from vlamix.transforms.chain import build_chain
from vlamix.transforms.features import check_chain
from vlamix.transforms.stats import DimStats

__all__ = ["RobotDataset", "RobotOutcome", "listed", "load_stats"]

log = logging.getLogger("vlamix.ingest")


def listed(sources: SourcesFile, name: str, listing, *args) -> list:
    """The units of one dataset; a dataset whose path cannot be listed is an error naming the sources
    file and the dataset, raised before any job starts."""
    try:
        return list(listing(*args))
    except (ValueError, OSError) as e:  # ConfigError is a ValueError
        raise ConfigError(f"{sources.path}: dataset {name!r}: {e}") from e


def load_stats(store: Store, name: str) -> tuple[DimStats, DimStats]:
    """(state, actions) statistics of a robot dataset, as the stats step wrote them."""
    doc = store.read_json(STATS_PATH.format(dataset=name))
    return DimStats.from_json(doc["state"]), DimStats.from_json(doc["actions"])


@dataclass(frozen=True)
class RobotOutcome:
    """Where every episode of a robot dataset ended: exact duplicates (by content hash) keep the lowest
    episode index; `late` are episodes the build's sample gate refused after extract kept them."""

    kept: list[ExtractedEpisode]
    quarantined: list[QuarantineRecord]
    duplicates: list[ExtractedEpisode]
    late: list[QuarantineRecord]

    @classmethod
    def read(cls, work: WorkDir, name: str) -> RobotOutcome:
        seen: set[str] = set()
        kept, dups = [], []
        for e in work.extracted_episodes(name):
            (dups if e.episode_hash in seen else kept).append(e)
            seen.add(e.episode_hash)
        return cls(kept, work.quarantined(name), dups, work.build_quarantined(name))

    @property
    def written(self) -> list[ExtractedEpisode]:
        """Kept episodes less those the build's gate refused."""
        late = {q.episode for q in self.late}
        return [e for e in self.kept if e.episode not in late]

    def accounting(self) -> Accounting:
        written, quarantined, dups = self.written, self.quarantined + self.late, self.duplicates
        samples = sum(e.samples for e in written)
        frames_kept = sum(e.frames for e in written)
        return Accounting(
            unit="episode",
            read=len(written) + len(quarantined) + len(dups),
            written=len(written),
            quarantined=len(quarantined),
            duplicates=len(dups),
            frames_read=frames_kept + sum(q.frames for q in quarantined) + sum(e.frames for e in dups),
            frames_written=samples,
            frames_filtered=frames_kept - samples,
            frames_quarantined=sum(q.frames for q in quarantined),
            frames_duplicates=sum(e.frames for e in dups),
        )


def _check_environments(src: RobotSource, refs: list[EpisodeRef]) -> None:
    """A constant or a path pattern names every listed episode's environment (a pattern whose path part
    is empty for some file is a configuration error, before any job). A field is checked by the readers."""
    if environment_field(src.environment) is not None:
        return
    for ref in refs:
        try:
            environment_of(src.environment, ref, None)
        except FieldError as e:
            raise ConfigError(f"episode {ref.index} ({ref.source_file}): {e}") from e


class RobotDataset(DatasetKind):
    def __init__(self, sources: SourcesFile, src: RobotSource):
        self.sources, self.src, self.name = sources, src, src.name

    @cached_property
    def embodiment(self) -> Embodiment:
        return self.sources.embodiment(self.src)

    def outcome(self, work: WorkDir) -> RobotOutcome:
        return RobotOutcome.read(work, self.name)

    def extract_units(self, opts: IngestOptions) -> list[ExtractUnit]:
        emb = self.embodiment
        refs = listed(
            self.sources, self.name, reader_for(self.src.format).list_episodes, self.sources, self.src
        )
        _check_environments(self.src, refs)
        opts.store.rmtree(WorkDir.frames(self.name))
        return [EpisodeExtract(ref, self.src, emb, opts.url) for ref in refs]

    def after_extract(self, opts: IngestOptions) -> None:
        opts.work.ensure_outcomes(self.name)

    def build_units(self, opts: IngestOptions) -> list[BuildUnit]:
        kept = self.outcome(opts.work).kept
        if not kept:
            prepare_dataset(opts.store, self.name, "", 0, True)
            return []
        state_stats, action_stats = load_stats(opts.store, self.name)
        emb, src, tok = self.embodiment, self.src, tokenizer_dir(opts)
        check_chain(
            build_chain(emb, state_stats, action_stats, src.normalization, tokenizer_set_at(tok)), emb
        )  # before any job

        def units(n: int) -> list[BuildUnit]:
            return [
                EpisodeBuild(e, src, emb, state_stats, action_stats, opts.url, opts.seed, n, None, tok)
                for e in kept
            ]

        return plan_units(
            opts,
            self.name,
            sum(e.samples for e in kept),
            units,
            source=src,
            embodiment=emb,
            stats=opts.store.sha256(STATS_PATH.format(dataset=self.name)),
            units=[e.to_json() for e in kept],
        )

    def manifest_entry(self, work: WorkDir) -> dict:
        outcome, emb, src, out = self.outcome(work), self.embodiment, self.src, work.store
        acc = outcome.accounting()
        acc.check(self.name)
        out.write_bytes(EMBODIMENT_PATH.format(name=emb.name), self.sources.embodiment_path(src).read_bytes())
        entry = {
            "episode_id": EPISODE_IDS[src.format],
            "kind": src.kind,
            "embodiment": emb.name,
            "embodiment_spec": EMBODIMENT_PATH.format(name=emb.name),
            "license": src.license,
            "citation": src.citation,
            "stride": src.stride,
            "samples": acc.frames_written,
            "accounting": acc.to_json(),
            "quarantine": write_quarantine(out, self.name, outcome.quarantined + outcome.late),
            **shard_entries(work, self.name, acc.frames_written, environments=True),
        }
        if outcome.written:
            entry["stats"] = file_ref(out, STATS_PATH.format(dataset=self.name))
        return entry

    def overlap(self, work: WorkDir) -> Overlap:
        return "episode", {e.episode_hash for e in self.outcome(work).kept}

    def gate_rows(self, work: WorkDir) -> pd.DataFrame:
        outcome = self.outcome(work)
        passed = [f"episode {e.episode}" for e in outcome.written + outcome.duplicates]
        gated = [q for q in outcome.quarantined + outcome.late if q.reason.startswith(GATE_PREFIX)]
        return gate_frame(passed, [f"episode {q.episode}" for q in gated])


def tokenizer_dir(opts: IngestOptions) -> str:
    """The tokenizer set as workers load it: a local folder, or its URL (fetched into a cache)."""
    return opts.store.url_of(opts.work.tokenizer_set()["path"])
