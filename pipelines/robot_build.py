"""A robot episode's build task: its frame Parquet -> samples through the embodiment's chain, behind the
samples' quality gate. The same task builds an HL / VI dataset's samples over the episode (`annotation`):
its spans at its own stride, with the annotation's text as target (HL) or prompt (VI)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

from vlamix.pipelines.quality import GATE_PREFIX, failures
from vlamix.pipelines.sample import Sample
from vlamix.pipelines.tokenizer_cache import tokenizer_set_at
from vlamix.pipelines.units import PlacedSample
from vlamix.schemas.embodiment import CAMERA_SLOTS, Embodiment
from vlamix.schemas.expectations import sample_expectations, sample_table
from vlamix.schemas.frame import FRAME, frame_key, image_column
from vlamix.schemas.outcome import ExtractedEpisode
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.schemas.sample import SAMPLE
from vlamix.shards.assign import place
from vlamix.shards.store import store_for
from vlamix.sources.annotations_jsonl import Span
from vlamix.sources.config import RobotSource
from vlamix.stage_clock import stage
from vlamix.tokenizers.fast import FastRangeError
from vlamix.tokenizers.tokenizer_set import TokenizerSet
from vlamix.transforms.chain import apply_batch, build_chain
from vlamix.transforms.filters import select_frames
from vlamix.transforms.stats import DimStats

__all__ = ["AnnotationJob", "EpisodeBuild"]


@dataclass(frozen=True)
class AnnotationJob:
    """The samples an HL or VI dataset takes from one robot episode: its spans, at its own stride."""

    dataset: str
    kind: str  # HL or VI
    spans: tuple[Span, ...]
    stride: int


@dataclass(frozen=True)
class _Pick:
    """One sample to build: a frame, the dataset and kind it goes to, its prompt task and target text."""

    frame: int
    dataset: str
    kind: str
    task: str | None
    target: str | None


@dataclass(frozen=True)
class EpisodeBuild:
    extracted: ExtractedEpisode
    source: RobotSource
    embodiment: Embodiment
    state_stats: DimStats
    action_stats: DimStats
    out: str
    seed: int
    shards: int  # shard count of the dataset
    annotation: AnnotationJob | None = None  # set for an HL / VI dataset built over this episode
    tokenizers: str = ""  # the tokenizer set folder
    skip: frozenset[int] = frozenset()  # shards a killed run already finished: their samples are not built

    @property
    def dataset(self) -> str:
        return self.annotation.dataset if self.annotation else self.extracted.dataset

    @property
    def unit(self) -> str:
        return f"{self.extracted.dataset}-{self.extracted.episode:06d}"

    @property
    def expected_frames(self) -> int | None:
        """The samples handed on (the gate may refuse them all); None for a resumed unit."""
        if self.skip:
            return None
        job = self.annotation
        if job is None:
            return self.extracted.samples
        return sum(len(range(s.start, s.end, job.stride)) for s in job.spans)

    def samples(self) -> Iterator[PlacedSample]:
        """Every sample is built, also those of shards already built (the gate sees the whole episode);
        those of the shards in `skip` are not handed on."""
        tokset = tokenizer_set_at(self.tokenizers) if self.tokenizers else None  # loaded once per process
        built = self.build(tokset)
        with stage("gates"):
            self._gate(built, tokset)
        for sample in built:
            shard, position = place(sample.key, self.seed, self.shards)
            if shard not in self.skip:
                yield shard, position, sample

    def _picks(self, rows: list[dict]) -> list[_Pick]:
        job = self.annotation
        if job is None:
            actions = np.asarray([r["action"] for r in rows])
            keep = select_frames(actions, self.source.stride, self.source.idle_filter)
            return [_Pick(int(f), rows[f]["dataset"], rows[f]["kind"], rows[f]["task"], None) for f in keep]
        picks = []
        for span in job.spans:
            for f in range(span.start, span.end, job.stride):
                if job.kind == "HL":  # pi(l_hat | o, l) then pi(a | o, l_hat) in one sequence
                    picks.append(_Pick(f, job.dataset, "HL", rows[f]["task"], span.text))
                else:  # the verbal instruction in force is the prompt, actions the target
                    picks.append(_Pick(f, job.dataset, "VI", span.text, None))
        return picks

    def build(self, tokset: TokenizerSet | None) -> list[Sample]:
        """Frame Parquet of the episode -> its samples, validated against the SAMPLE schema."""
        ext, emb = self.extracted, self.embodiment
        with stage("frame parquet"):
            with store_for(self.out).open(ext.frames_path) as f:
                table = pq.read_table(f)
            FRAME.validate(table, ext.frames_path)
            rows = table.to_pylist()
        chain = build_chain(emb, self.state_stats, self.action_stats, self.source.normalization, tokset)
        episode_actions = np.asarray(table.column("action").to_pylist(), dtype=np.float32)
        duration = len(rows) / emb.control_rate_hz
        picks = self._picks(rows)
        keys = [frame_key(p.dataset, rows[p.frame]["episode"], rows[p.frame]["frame"]) for p in picks]
        inputs = [
            {
                "state": np.asarray(rows[pick.frame]["state"], np.float32),
                "episode_actions": episode_actions,
                "frame": pick.frame,
                "task": pick.task,
                "target": pick.target,
                "key": key,
            }
            for pick, key in zip(picks, keys, strict=True)
        ]
        try:
            with stage("chain"):  # FAST encodes the episode's chunks in one batch
                outputs = apply_batch(chain, inputs)
        except FastRangeError as e:  # a chunk no token of the set can say: the gate quarantines it
            reason = f"{GATE_PREFIX}FAST coefficients outside the tokenizer set's fitted range ({e})"
            raise BadRecord(self._quarantine(reason, picks[e.first].frame, "actions")) from e
        samples = []
        for pick, key, s in zip(picks, keys, outputs, strict=True):
            row = rows[pick.frame]
            samples.append(
                Sample(
                    key=key,
                    dataset=pick.dataset,
                    kind=pick.kind,
                    split=row["split"],
                    images=tuple(row[image_column(slot)] for slot in CAMERA_SLOTS),
                    prompt=s["prompt"],
                    input_ids=s.get("input_ids"),
                    loss_mask=s.get("loss_mask"),
                    target=pick.target,
                    embodiment=emb.name,
                    control_mode=emb.control_mode,
                    episode=row["episode"],
                    frame=row["frame"],
                    success=row["success"],
                    environment=row["environment"],  # HL / VI samples: the annotated episode's
                    timestamp=row["timestamp"],
                    duration=duration,
                    state=s["state"],
                    state_dim_mask=s["state_dim_mask"],
                    actions=s["actions"],
                    action_dim_mask=s["action_dim_mask"],
                    action_is_pad=s["action_is_pad"],
                    fast_ids=s.get("fast_ids"),
                )
            )
        with stage("assembly"):  # validated before any write
            SAMPLE.table([s.plain_record() for s in samples], ext.frames_path)
        return samples

    def _gate(self, samples: list[Sample], tokset: TokenizerSet | None) -> None:
        """The samples' quality gate: one failing sample quarantines the episode (for the dataset built)."""
        if not samples or tokset is None:
            return
        vocab = tokset.vocab_size
        records = [s.record() for s in samples]
        emb = self.embodiment
        bad = failures(
            sample_table(records, emb), f"samples_{self.source.kind}", sample_expectations(emb, vocab)
        )
        if bad:
            f = bad[0]
            reason = f"{f.reason()} in the built sample; {len(bad)} failure(s) in all"
            raise BadRecord(self._quarantine(reason, int(records[f.row]["frame"]), f.column))

    def _quarantine(self, reason: str, frame: int, column: str | None) -> QuarantineRecord:
        ext = self.extracted
        return QuarantineRecord(
            self.dataset, ext.source_file, reason, ext.episode, None, frame, column, ext.frames
        )
