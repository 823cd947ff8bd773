"""HL and VI datasets: annotation lines read against the robot episodes the extract wrote (driver side),
built over those episodes' frames (the text joined at build, never written back into the frames), and
accounted for per annotation line."""

from __future__ import annotations

import dataclasses
from collections import Counter
from functools import cached_property
from pathlib import PurePosixPath

from vlamix.config import ConfigError
from vlamix.pipelines.build_plan import plan_units, prepare_dataset
from vlamix.pipelines.entries import file_ref, shard_entries, write_quarantine
from vlamix.pipelines.kinds import DatasetKind
from vlamix.pipelines.options import IngestOptions
from vlamix.pipelines.robot_build import AnnotationJob, EpisodeBuild
from vlamix.pipelines.robot_kind import RobotDataset, load_stats, tokenizer_dir
from vlamix.pipelines.units import BuildUnit
from vlamix.schemas.quarantine import QuarantineRecord
from vlamix.shards.layout import EMBODIMENT_PATH, STATS_PATH
from vlamix.shards.manifest import Accounting
from vlamix.shards.workdir import WorkDir
from vlamix.sources.annotations_jsonl import EpisodeInfo, Span, read_spans
from vlamix.sources.config import AnnotationSource, SourcesFile
from vlamix.sources.location import is_file, locate

__all__ = ["AnnotationDataset", "span_samples"]


def _own_name(source_file: str) -> str:
    """The name a file-per-episode source gives an episode: the file stem (`episode_3` of
    `mobile_aloha/episode_3.hdf5`) or the part after `#` (`episode_000003` of `lerobot#episode_000003`)."""
    return source_file.rsplit("#", 1)[1] if "#" in source_file else PurePosixPath(source_file).stem


def span_samples(span: Span, stride: int) -> int:
    """Samples one span gives at `stride`."""
    return len(range(span.start, span.end, stride))


class AnnotationDataset(DatasetKind):
    def __init__(self, sources: SourcesFile, a: AnnotationSource):
        self.sources, self.a, self.name = sources, a, a.name

    @cached_property
    def robot(self) -> RobotDataset:
        return RobotDataset(self.sources, self.sources.robot(self.a.dataset))

    def _episode_infos(self, work: WorkDir) -> dict[int, EpisodeInfo]:
        fps = self.robot.embodiment.control_rate_hz
        outcome = self.robot.outcome(work)
        units = [
            (q.episode, q.source_file, q.frames, f"quarantined: {q.reason}") for q in outcome.quarantined
        ]
        units += [
            (d.episode, d.source_file, d.frames, "an exact duplicate of an earlier episode")
            for d in outcome.duplicates
        ]
        units += [(e.episode, e.source_file, e.frames, "written") for e in outcome.kept]
        units = [u for u in units if u[0] is not None]
        shared = Counter(_own_name(f) for _, f, _, _ in {(u[0], u[1], 0, "") for u in units})
        infos = {}
        for episode, source_file, frames, status in units:  # later (written) entries win
            name = _own_name(source_file)
            # a name that several episodes share (an RLDS file holds many) addresses none of them
            infos[episode] = EpisodeInfo(frames, fps, status, (name,) if shared[name] == 1 else ())
        return infos

    def extract_units(self, opts: IngestOptions) -> list:
        """None: the lines are read after the robot episodes are extracted. A missing file fails the
        dataset alone."""
        if not is_file(locate(self.sources.root, self.a.path)):
            raise ConfigError(f"annotation file {self.a.path!r} is missing (or not a file)")
        return []

    def after_extract(self, opts: IngestOptions) -> None:
        """Spans, quarantined lines and the count of lines read, into work/."""
        work = opts.work
        spans, bad, read = read_spans(self.sources, self.a, self._episode_infos(work))
        work.write_spans(self.name, spans, read)
        work.write_outcomes("quarantined", self.name, bad, keep_order=True)

    def build_units(self, opts: IngestOptions) -> list[BuildUnit]:
        a, work = self.a, opts.work
        spans = work.read_spans(self.name)
        if not spans:
            prepare_dataset(opts.store, self.name, "", 0, True)
            return []
        robot, emb = self.robot.src, self.robot.embodiment
        kept = {e.episode: e for e in self.robot.outcome(work).kept}
        state_stats, action_stats = load_stats(opts.store, robot.name)  # normalized like the robot's samples
        tok = tokenizer_dir(opts)

        def units(n: int) -> list[BuildUnit]:
            return [
                EpisodeBuild(
                    kept[episode],
                    robot,
                    emb,
                    state_stats,
                    action_stats,
                    opts.url,
                    opts.seed,
                    n,
                    AnnotationJob(a.name, a.kind, group, a.stride),
                    tok,
                )
                for episode, group in spans.items()
            ]

        return plan_units(
            opts,
            self.name,
            sum(span_samples(s, a.stride) for group in spans.values() for s in group),
            units,
            source=a,
            robot=robot,
            embodiment=emb,
            stats=opts.store.sha256(STATS_PATH.format(dataset=robot.name)),
            units=[kept[ep].to_json() for ep in spans] + [repr(spans)],
        )

    def accounting(self, work: WorkDir) -> tuple[Accounting, list[QuarantineRecord]]:
        """Lines read = spans written + quarantined (lines that did not parse or point nowhere, and the
        spans of episodes whose samples failed the build's quality gate, one record per span)."""
        by_episode = work.read_spans(self.name)
        late_by_ep = {q.episode: q for q in work.build_quarantined(self.name)}
        spans = [s for group in by_episode.values() for s in group]
        bad = work.quarantined(self.name)
        gated = [s for ep, group in by_episode.items() if ep in late_by_ep for s in group]
        for s in gated:
            q = late_by_ep[s.episode]
            bad.append(
                dataclasses.replace(q, reason=f"span {s.start}..{s.end}: {q.reason}", frames=s.end - s.start)
            )
        frames = sum(s.end - s.start for s in spans)
        gated_frames = sum(s.end - s.start for s in gated)
        built = sum(span_samples(s, self.a.stride) for s in spans if s.episode not in late_by_ep)
        acc = Accounting(
            unit="annotation",
            read=work.span_lines_read(self.name),
            written=len(spans) - len(gated),
            quarantined=len(bad),
            duplicates=0,
            frames_read=frames,
            frames_written=built,
            frames_filtered=frames - gated_frames - built,
            frames_quarantined=gated_frames,
            frames_duplicates=0,
        )
        return acc, bad

    def manifest_entry(self, work: WorkDir) -> dict:
        a, robot, out = self.a, self.robot, work.store
        acc, bad = self.accounting(work)
        acc.check(self.name)
        entry = {
            "kind": a.kind,
            "embodiment": robot.embodiment.name,
            "embodiment_spec": EMBODIMENT_PATH.format(name=robot.embodiment.name),
            "license": a.license,
            "citation": a.citation,
            "stride": a.stride,
            "samples": acc.frames_written,
            "accounting": acc.to_json(),
            "quarantine": write_quarantine(out, self.name, bad),
            **shard_entries(work, self.name, acc.frames_written, environments=True),
        }
        stats = STATS_PATH.format(dataset=robot.name)
        if out.exists(stats):  # HL / VI samples use their robot dataset's statistics
            entry["stats"] = file_ref(out, stats)
            entry["normalized_with"] = robot.name
        return {**entry, "annotates": robot.name}
