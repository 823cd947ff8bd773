"""HL and VI datasets in the ingest (driver side): validate spans against the robot episodes that were
written, join them onto those episodes' frames (`subtask`, `verbal_instruction`), plan their build tasks
and account for every annotation line."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from vlamix.pipelines.outcomes import read_jsonl, robot_outcomes, write_jsonl
from vlamix.schemas.frame import FRAME
from vlamix.schemas.quarantine import QuarantineRecord
from vlamix.shards.layout import WORK_DIR
from vlamix.shards.manifest import Accounting
from vlamix.shards.store import Store
from vlamix.sources.annotations_jsonl import EpisodeInfo, Span, read_spans
from vlamix.sources.config import AnnotationSource, SourcesFile

__all__ = ["annotation_accounting", "annotation_spans", "extract_annotations"]

COLUMN = {"HL": "subtask", "VI": "verbal_instruction"}


def _own_name(source_file: str) -> str:
    """The name a file-per-episode source gives an episode: the file stem (`episode_3` of
    `mobile_aloha/episode_3.hdf5`) or the part after `#` (`episode_000003` of `lerobot#episode_000003`)."""
    return source_file.rsplit("#", 1)[1] if "#" in source_file else PurePosixPath(source_file).stem


def _episode_infos(out: Store, sources: SourcesFile, a: AnnotationSource) -> dict[int, EpisodeInfo]:
    robot = sources.robot(a.dataset)
    fps = sources.embodiment(robot).control_rate_hz
    kept, quarantined, dups = robot_outcomes(out, robot.name)
    units = [(q.episode, q.source_file, q.frames, f"quarantined: {q.reason}") for q in quarantined]
    units += [(d.episode, d.source_file, d.frames, "an exact duplicate of an earlier episode") for d in dups]
    units += [(e.episode, e.source_file, e.frames, "written") for e in kept]
    units = [u for u in units if u[0] is not None]
    shared = Counter(_own_name(f) for _, f, _, _ in {(u[0], u[1], 0, "") for u in units})
    infos = {}
    for episode, source_file, frames, status in units:  # later (written) entries win
        name = _own_name(source_file)
        # a name that several episodes share (an RLDS file holds many) addresses none of them
        infos[episode] = EpisodeInfo(frames, fps, status, (name,) if shared[name] == 1 else ())
    return infos


def annotation_spans(out: Store, name: str) -> dict[int, tuple[Span, ...]]:
    by_episode: dict[int, list[Span]] = defaultdict(list)
    for d in read_jsonl(out, f"{WORK_DIR}/annotations/{name}.jsonl"):
        by_episode[d["episode"]].append(Span(**d))
    return {e: tuple(v) for e, v in sorted(by_episode.items())}


def _join(out: Store, sources: SourcesFile) -> None:
    """Write each annotation dataset's text into the robot frames it covers (the frame record's
    `subtask` / `verbal_instruction` in force at that time)."""
    per_episode: dict[tuple[str, int], dict[str, list[Span]]] = defaultdict(lambda: defaultdict(list))
    for a in sources.annotations:
        for episode, spans in annotation_spans(out, a.name).items():
            per_episode[(a.dataset, episode)][COLUMN[a.kind]] += spans
    extracted = {}
    for dataset in {d for d, _ in per_episode}:
        extracted |= {(dataset, e.episode): e for e in robot_outcomes(out, dataset)[0]}
    for key, columns in sorted(per_episode.items()):
        rel = extracted[key].frames_path
        with out.open(rel) as f:
            table = pq.read_table(f)
        for column, spans in columns.items():
            values = table.column(column).to_pylist()
            for span in spans:
                values[span.start : span.end] = [span.text] * (span.end - span.start)
            table = table.set_column(
                table.schema.get_field_index(column), FRAME.arrow.field(column), pa.array(values, pa.string())
            )
        FRAME.validate(table, out.url_of(rel))
        with out.open_write(rel) as f:
            pq.write_table(table, f, compression="zstd")


def extract_annotations(out: Store, sources: SourcesFile) -> None:
    """Spans, quarantined lines and line counts of every HL/VI dataset into work/, then the join."""
    for a in sources.annotations:
        spans, bad, read = read_spans(sources, a, _episode_infos(out, sources, a))
        write_jsonl(out, f"{WORK_DIR}/annotations/{a.name}.jsonl", [s.to_json() for s in spans])
        write_jsonl(out, f"{WORK_DIR}/quarantined/{a.name}.jsonl", [q.to_json() for q in bad])
        out.write_text(f"{WORK_DIR}/annotations/{a.name}.lines.json", json.dumps({"read": read}))
    _join(out, sources)


def annotation_accounting(
    out: Store, a: AnnotationSource, written_samples: int, late: list[QuarantineRecord] = ()
) -> tuple[Accounting, list[QuarantineRecord]]:
    """Spans read = written + quarantined (lines that did not parse or point nowhere, and the spans of
    episodes whose samples failed the build's quality gate: `late`, one record per span)."""
    by_episode = annotation_spans(out, a.name)
    late_by_ep = {q.episode: q for q in late}
    spans = [s for group in by_episode.values() for s in group]
    bad = [QuarantineRecord(**d) for d in read_jsonl(out, f"{WORK_DIR}/quarantined/{a.name}.jsonl")]
    gated = [s for ep, group in by_episode.items() if ep in late_by_ep for s in group]
    for s in gated:
        q = late_by_ep[s.episode]
        bad.append(
            dataclasses.replace(q, reason=f"span {s.start}..{s.end}: {q.reason}", frames=s.end - s.start)
        )
    read = out.read_json(f"{WORK_DIR}/annotations/{a.name}.lines.json")["read"]
    frames = sum(s.end - s.start for s in spans)
    gated_frames = sum(s.end - s.start for s in gated)
    acc = Accounting(
        unit="annotation",
        read=read,
        written=len(spans) - len(gated),
        quarantined=len(bad),
        duplicates=0,
        frames_read=frames,
        frames_written=written_samples,
        frames_filtered=frames - gated_frames - written_samples,
        frames_quarantined=gated_frames,
        frames_duplicates=0,
    )
    return acc, bad


def span_samples(span: Span, stride: int) -> int:
    """Samples one span gives at `stride`."""
    return len(range(span.start, span.end, stride))
