"""What an export reads from a layout: a robot dataset's written episodes as frame records (`work/frames/`,
native units), its embodiment spec, and the HL/VI spans that annotate it (`work/annotations/`).

Only a layout that `vlamix ingest` built keeps `work/`; a published layout (shards only) is refused with one
line. The episodes are exactly those the manifest counts as written (`RobotOutcome.written`: exact
duplicates and the build gate's late quarantines left out), so an export's accounting equals the layout's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vlamix.pipelines.robot_kind import RobotOutcome
from vlamix.schemas.embodiment import Embodiment, embodiment_from_text
from vlamix.schemas.frame import FRAME, ROBOT_KINDS, SPLITS
from vlamix.schemas.outcome import ExtractedEpisode
from vlamix.shards.layout import WORK_DIR
from vlamix.shards.manifest import read_manifest
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir
from vlamix.sources.annotations_jsonl import Span

__all__ = ["ExportError", "RobotData", "export_datasets", "open_layout"]


class ExportError(ValueError):
    """A one-line reason an export cannot go on, naming the layout, dataset or file and what to do."""


@dataclass(frozen=True)
class Layout:
    store: Store
    manifest: dict

    @property
    def url(self) -> str:
        return self.store.url

    def robot(self, name: str) -> RobotData:
        entry = self.manifest["datasets"].get(name)
        if entry is None:
            known = ", ".join(sorted(self.manifest["datasets"]))
            raise ExportError(f"{self.url}: no dataset {name!r} in the manifest (it has: {known})")
        if entry["kind"] not in ROBOT_KINDS:
            hint = (
                f"; it annotates {entry['annotates']!r}: export that one (its subtasks and instructions ride along)"
                if entry.get("annotates")
                else ""
            )
            raise ExportError(
                f"{self.url}: {name!r} is a {entry['kind']} dataset; only robot datasets (MM, ME, CE) export{hint}"
            )
        work = WorkDir(self.store)
        if not self.store.exists(WorkDir.outcomes("extracted", name)):
            raise ExportError(
                f"{self.url}: no {WORK_DIR}/ frame records for {name!r} (a published layout keeps only shards); "
                "export reads what `vlamix ingest` leaves in work/: run it where the layout was built"
            )
        annotators = {
            other: e["kind"]
            for other, e in sorted(self.manifest["datasets"].items())
            if e.get("annotates") == name and e["kind"] in ("HL", "VI")
        }
        return RobotData(self.store, work, name, entry, annotators)


def open_layout(where: str | Path) -> Layout:
    store = Store(where)
    try:
        manifest = read_manifest(store)
    except FileNotFoundError as e:
        raise ExportError(str(e)) from e
    return Layout(store, manifest)


@dataclass(frozen=True)
class RobotData:
    """One robot dataset of a layout, as an export reads it."""

    store: Store
    work: WorkDir
    name: str
    entry: dict  # the manifest's entry
    annotators: dict[str, str]  # HL/VI dataset -> kind, those that annotate this one

    @cached_property
    def embodiment(self) -> Embodiment:
        rel = self.entry["embodiment_spec"]
        return embodiment_from_text(self.store.read_text(rel), self.store.url_of(rel))

    @cached_property
    def episodes(self) -> list[ExtractedEpisode]:
        """The written episodes in export order: train, then val, then test, each by episode index (so a
        split is a contiguous range of episode indices, as LeRobot's `info.json` states splits)."""
        written = RobotOutcome.read(self.work, self.name).written
        return sorted(written, key=lambda e: (SPLITS.index(e.split), e.episode))

    @cached_property
    def spans(self) -> dict[str, dict[int, tuple[Span, ...]]]:
        """{"HL": {episode: spans}, "VI": {...}}: every annotating dataset's spans, merged by kind (spans of
        two datasets of one kind on the same episode are kept in start order)."""
        out: dict[str, dict[int, list[Span]]] = {"HL": {}, "VI": {}}
        for other, kind in self.annotators.items():
            for episode, spans in self.work.read_spans(other).items():
                out[kind].setdefault(episode, []).extend(spans)
        return {
            k: {e: tuple(sorted(s, key=lambda x: (x.start, x.line))) for e, s in v.items()}
            for k, v in out.items()
        }

    def frames(self, episode: ExtractedEpisode, columns: list[str] | None = None) -> pa.Table:
        """The episode's frame records, validated against the FRAME schema (all columns), in frame order."""
        with self.store.open(episode.frames_path) as f:
            table = pq.read_table(f, columns=columns)
        if columns is None:
            FRAME.validate(table, self.store.url_of(episode.frames_path))
        frames = table.column("frame").to_pylist() if "frame" in table.column_names else None
        if frames is not None and frames != list(range(len(frames))):
            raise ExportError(
                f"{self.store.url_of(episode.frames_path)}: frames are not 0..{len(frames) - 1} in order"
            )
        if table.num_rows != episode.frames:
            raise ExportError(
                f"{self.store.url_of(episode.frames_path)}: {table.num_rows} frames, the extract recorded {episode.frames}"
            )
        return table


def export_datasets(layout: Layout, names: list[str], mixture: Path | None) -> list[str]:
    """The robot datasets to export: `names`, plus every robot dataset `mixture` draws from (an HL/VI
    component counts as the robot dataset it annotates), each once, in the order given."""
    chosen = list(names)
    if mixture is not None:
        from vlamix.mixtures.resolve import resolve

        res = resolve(mixture)
        for e in res.entries:
            entry = layout.manifest["datasets"].get(e.dataset)
            if entry is None:
                raise ExportError(
                    f"{mixture}: draws from {e.dataset!r}, which {layout.url} does not hold (export the layout the mixture names)"
                )
            chosen.append(entry.get("annotates") or e.dataset if entry["kind"] in ("HL", "VI") else e.dataset)
        chosen = [n for n in chosen if layout.manifest["datasets"][n]["kind"] in ROBOT_KINDS or n in names]
    if not chosen:
        raise ExportError("name a dataset to export: --dataset NAME (several allowed) or --mixture FILE")
    return list(dict.fromkeys(chosen))
