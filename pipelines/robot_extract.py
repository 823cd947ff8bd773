"""A robot episode's extract task: the reader's native frames -> cameras resized and encoded
(transforms/image.py) -> validated frame Parquet (written once, atomically), behind the frames' quality
gate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

from vlamix.pipelines.options import ErrorPolicy, unexpected_reason
from vlamix.pipelines.quality import failures
from vlamix.pipelines.units import Extraction
from vlamix.schemas.embodiment import Embodiment
from vlamix.schemas.expectations import dim_cell, dim_expectations, dim_table, frame_expectations, frame_table
from vlamix.schemas.frame import FRAME
from vlamix.schemas.outcome import ExtractedEpisode
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.shards.workdir import WorkDir
from vlamix.sources.config import RobotSource
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.readers import reader_for
from vlamix.sources.remote import unreachable_source
from vlamix.stage_clock import stage
from vlamix.transforms.filters import select_frames
from vlamix.transforms.image import EncodeCameras
from vlamix.transforms.rotation_groups import TrainedRotations

__all__ = ["EpisodeExtract", "extract_episode"]

FRAME_BATCH = 256  # frame rows per Parquet row group


@dataclass(frozen=True)
class EpisodeExtract:
    ref: EpisodeRef
    source: RobotSource
    embodiment: Embodiment
    out: str  # layout root

    @property
    def dataset(self) -> str:
        return self.ref.dataset

    @property
    def name(self) -> str:
        return f"{self.ref.dataset}-{self.ref.index:06d}"

    @property
    def expected_frames(self) -> int | None:
        return self.ref.frames or None  # 0: the listing did not read the length (ALOHA, RLDS)

    def extract(self, policy: ErrorPolicy) -> Extraction:
        """The episode written, or quarantined: a reader's BadRecord always, any other exception under
        the "quarantine" policy (with whatever it got to write removed)."""
        ref = self.ref
        try:
            results, bad = [extract_episode(self)], []
        except BadRecord as e:
            results, bad = [], [e.record]
        except Exception as e:
            gone = unreachable_source(e)  # a raw file still failing after the retries: input, not a bug
            if policy == "raise" and gone is None:
                raise
            WorkDir.at(self.out).store.rm(WorkDir.frames(ref.dataset, ref.index))
            reason = unexpected_reason(e) if gone is None else " ".join(str(gone).split())
            bad = [QuarantineRecord(ref.dataset, ref.source_file, reason, ref.index, frames=ref.frames)]
            results = []
        frames = sum(r.frames for r in results) + sum(q.frames for q in bad)
        counters = {"episodes_read": 1, "episodes_quarantined" if bad else "episodes_extracted": 1}
        return Extraction(results, bad, {**counters, "frames_read": frames})


def extract_episode(task: EpisodeExtract) -> ExtractedEpisode:
    """Raw episode -> validated frame Parquet (atomic). Raises BadRecord for input to quarantine."""
    ref, store = task.ref, WorkDir.at(task.out).store
    rel = WorkDir.frames(ref.dataset, ref.index)
    encode = EncodeCameras()
    read = reader_for(task.source.format).read_episode
    emb = task.embodiment  # the reader sees it as logged: rotation groups in the source's representation
    rows = map(encode, read(ref, task.source, emb.as_logged(), box=encode.resize.size))
    if emb.groups:
        rows = map(_trained_rotations(task), rows)
    where = f"{ref.source_file} (episode {ref.index})"
    first: dict | None = None
    n = 0
    # stages: the reader's own time is "read" (its decodes are "decode", the encoder's "resize"/"encode")
    with store.open_write(rel) as f, pq.ParquetWriter(f, FRAME.arrow, compression="zstd") as writer:
        batch: list[dict] = []
        with stage("read"):
            for row in rows:
                first = first or row
                batch.append(row)
                if len(batch) == FRAME_BATCH:
                    with stage("frame parquet"):
                        writer.write_table(FRAME.table(batch, where))
                    n, batch = n + len(batch), []
        with stage("frame parquet"):
            if batch:
                writer.write_table(FRAME.table(batch, where))
                n += len(batch)
        if first is None:  # raised inside: nothing is written
            raise BadRecord(
                QuarantineRecord(ref.dataset, ref.source_file, "episode has no frames", ref.index)
            )
    with stage("frame parquet"), store.open(rel) as f:
        cols = pq.read_table(f, columns=["state", "action", "timestamp", "task"]).to_pydict()
    with stage("gates"):
        bad = frame_failures(cols, task.embodiment, task.source.kind)
    if bad:  # the quality gate: the first failing row names the expectation; the episode is quarantined
        store.rm(rel)
        f = bad[0]
        reason = f"{f.reason()}; {len(bad)} failure(s) in all"
        raise BadRecord(
            QuarantineRecord(ref.dataset, ref.source_file, reason, ref.index, None, f.row, f.column, n)
        )
    keep = select_frames(np.asarray(cols["action"]), task.source.stride, task.source.idle_filter)
    return ExtractedEpisode(
        ref.dataset, ref.index, n, first["episode_hash"], first["split"], ref.source_file, rel, len(keep)
    )


def _trained_rotations(task: EpisodeExtract):
    """A frame row's state and action with each rotation group in the spec's trained representation; a
    value that is no rotation (a quaternion whose norm is off by more than the tolerance) quarantines the
    episode, naming the frame."""
    emb, ref = task.embodiment, task.ref
    convert = {part: TrainedRotations(part, tuple(emb.spans(part))) for part in ("state", "action")}

    def row_trained(row: dict) -> dict:
        for part, to_trained in convert.items():
            if not to_trained.spans:
                continue
            try:
                row[part] = to_trained({part: np.asarray(row[part])})[part].tolist()
            except ValueError as e:
                reason = f"{part}: {e}"
                raise BadRecord(
                    QuarantineRecord(
                        ref.dataset,
                        ref.source_file,
                        reason,
                        ref.index,
                        None,
                        row["frame"],
                        part,
                        row["length"],
                    )
                ) from None
        return row

    return row_trained


def frame_failures(cols: dict, emb: Embodiment, kind: str) -> list:
    """The frames' quality gate: every state/action value (one long table) and every frame's timestamp and
    text; failures name the frame row and the dim, first row first."""
    table = dim_table(cols, emb)
    bad = failures(table, f"dims_{kind}", dim_expectations(), dim_cell(table, emb))
    bad += failures(frame_table(cols, emb), f"frames_{kind}", frame_expectations(emb))
    return sorted(bad, key=lambda f: (f.row, f.expectation, f.column or ""))
