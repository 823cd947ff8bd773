"""The ingest steps as engine-agnostic functions over small picklable tasks. Beam (and Ray) only wire
these together; steps hand results to each other through files under the layout's `work/` folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlamix.pipelines.quality import GATE_PREFIX, failures
from vlamix.pipelines.tokenizer_cache import tokenizer_set_at
from vlamix.schemas.embodiment import CAMERA_SLOTS, Embodiment
from vlamix.schemas.expectations import (
    dim_cell,
    dim_expectations,
    dim_table,
    frame_expectations,
    frame_table,
    sample_expectations,
    sample_table,
)
from vlamix.schemas.frame import FRAME, frame_key, image_column
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.schemas.sample import SAMPLE
from vlamix.shards.assign import place
from vlamix.shards.layout import FRAMES_DIR, WORK_DIR, shard_path
from vlamix.shards.members import to_members
from vlamix.shards.store import store_for
from vlamix.shards.writer import ShardResult, write_shard
from vlamix.sources.annotations_jsonl import Span
from vlamix.sources.config import RobotSource
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.readers import reader_for
from vlamix.tokenizers.fast import FastRangeError
from vlamix.transforms.chain import apply, build_chain
from vlamix.transforms.filters import select_frames
from vlamix.transforms.image import black_jpeg
from vlamix.transforms.stats import DimStats

__all__ = [
    "AnnotationJob",
    "BuildTask",
    "ExtractTask",
    "Extracted",
    "build_episode",
    "extract_episode",
    "write_shard_group",
]

FRAME_BATCH = 256  # frame rows per Parquet row group


@dataclass(frozen=True)
class ExtractTask:
    ref: EpisodeRef
    source: RobotSource
    embodiment: Embodiment
    out: str  # layout root


@dataclass(frozen=True)
class Extracted:
    dataset: str
    episode: int
    frames: int
    episode_hash: str
    split: str
    source_file: str
    frames_path: str  # relative to the layout root
    samples: int = 0  # frames left after the idle filter and the stride

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def frames_file(dataset: str, episode: int) -> str:
    return f"{FRAMES_DIR.format(dataset=dataset)}/{episode:06d}.parquet"


def extract_episode(task: ExtractTask) -> Extracted:
    """Raw episode -> validated frame Parquet (atomic). Raises BadRecord for input to quarantine."""
    ref, store = task.ref, store_for(task.out)
    rel = frames_file(ref.dataset, ref.index)
    rows = reader_for(task.source.format).read_episode(ref, task.source, task.embodiment)
    first: dict | None = None
    n = 0
    with store.open_write(rel) as f:
        with pq.ParquetWriter(f, FRAME.arrow, compression="zstd") as writer:
            batch: list[dict] = []
            for row in rows:
                first = first or row
                batch.append(row)
                if len(batch) == FRAME_BATCH:
                    writer.write_table(FRAME.table(batch, f"{ref.source_file} (episode {ref.index})"))
                    n, batch = n + len(batch), []
            if batch:
                writer.write_table(FRAME.table(batch, f"{ref.source_file} (episode {ref.index})"))
                n += len(batch)
        if first is None:  # raised inside: nothing is written
            raise BadRecord(
                QuarantineRecord(ref.dataset, ref.source_file, "episode has no frames", ref.index)
            )
    with store.open(rel) as f:
        cols = pq.read_table(f, columns=["state", "action", "timestamp", "task"]).to_pydict()
    bad = _frame_failures(cols, task.embodiment, task.source.kind)
    if bad:  # the quality gate: the first failing row names the expectation; the episode is quarantined
        store.rm(rel)
        f = bad[0]
        raise BadRecord(
            QuarantineRecord(
                ref.dataset,
                ref.source_file,
                f"{f.reason()}; {len(bad)} failure(s) in all",
                ref.index,
                None,
                f.row,
                f.column,
                n,
            )
        )
    keep = select_frames(np.asarray(cols["action"]), task.source.stride, task.source.idle_filter)
    return Extracted(
        ref.dataset, ref.index, n, first["episode_hash"], first["split"], ref.source_file, rel, len(keep)
    )


_SUITES: dict[str, tuple[list, list]] = {}


def _frame_failures(cols: dict, emb: Embodiment, kind: str) -> list:
    """The frames' quality gate: every state/action value (one long table) and every frame's timestamp and
    text; failures name the frame row and the dim, first row first."""
    key = repr(emb)  # the expectations are built once per process (specs are unhashable)
    if key not in _SUITES:
        _SUITES[key] = (dim_expectations(), frame_expectations(emb))
    dims, frames = _SUITES[key]
    table = dim_table(cols, emb)
    bad = failures(table, f"dims_{kind}", dims, dim_cell(table, emb))
    bad += failures(frame_table(cols, emb), f"frames_{kind}", frames)
    return sorted(bad, key=lambda f: (f.row, f.expectation, f.column or ""))


@dataclass(frozen=True)
class BuildTask:
    extracted: Extracted
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
    def unit(self) -> str:
        """The task's name, unique within the dataset it builds (names its spill files)."""
        return f"{self.extracted.dataset}-{self.extracted.episode:06d}"


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


def _picks(task: BuildTask, rows: list[dict]) -> list[_Pick]:
    job = task.annotation
    if job is None:
        actions = np.asarray([r["action"] for r in rows])
        keep = select_frames(actions, task.source.stride, task.source.idle_filter)
        return [_Pick(int(f), rows[f]["dataset"], rows[f]["kind"], rows[f]["task"], None) for f in keep]
    picks = []
    for span in job.spans:
        for f in range(span.start, span.end, job.stride):
            # HL: pi(l_hat | o, l) then pi(a | o, l_hat) in one sequence: task in, subtask out
            if job.kind == "HL":
                picks.append(_Pick(f, job.dataset, "HL", rows[f]["task"], span.text))
            else:  # the verbal instruction in force is the prompt, actions the target
                picks.append(_Pick(f, job.dataset, "VI", span.text, None))
    return picks


def _sample_record(s: dict, row: dict, pick: _Pick, emb: Embodiment, duration: float) -> dict:
    rec = {
        "key": frame_key(pick.dataset, row["episode"], row["frame"]),
        "dataset": pick.dataset,
        "kind": pick.kind,
        "embodiment": emb.name,
        "control_mode": emb.control_mode,
        "episode": row["episode"],
        "frame": row["frame"],
        "item": None,
        "split": row["split"],
        "success": row["success"],
        "timestamp": row["timestamp"],
        "duration": duration,
        "image_mask": [row[image_column(slot)] is not None for slot in CAMERA_SLOTS],
        "state": s["state"],
        "state_dim_mask": s["state_dim_mask"],
        "actions": s["actions"],
        "action_dim_mask": s["action_dim_mask"],
        "action_is_pad": s["action_is_pad"],
        "fast_ids": s.get("fast_ids"),
        "prompt": s["prompt"],
        "target": pick.target,
        "turns": None,
        "input_ids": s.get("input_ids"),
        "loss_mask": s.get("loss_mask"),
    }
    for slot in CAMERA_SLOTS:
        rec[image_column(slot)] = row[image_column(slot)] or black_jpeg()
    return rec


def _plain(record: dict) -> dict:
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in record.items()}


def build_episode(task: BuildTask) -> Iterator[tuple[int, int, dict, dict]]:
    """Frame Parquet of one episode -> (shard, position, webdataset entry, index row) per sample."""
    ext, emb = task.extracted, task.embodiment
    with store_for(task.out).open(ext.frames_path) as f:
        table = pq.read_table(f)
    FRAME.validate(table, ext.frames_path)
    rows = table.to_pylist()
    tokset = tokenizer_set_at(task.tokenizers) if task.tokenizers else None
    chain = build_chain(emb, task.state_stats, task.action_stats, task.source.normalization, tokset)
    episode_actions = np.asarray(table.column("action").to_pylist(), dtype=np.float32)
    duration = len(rows) / emb.control_rate_hz
    records = []
    for pick in _picks(task, rows):  # every sample, also those of shards already built: the gate sees all
        row = rows[pick.frame]
        sample = {
            "state": np.asarray(row["state"], np.float32),
            "episode_actions": episode_actions,
            "frame": pick.frame,
            "task": pick.task,
            "target": pick.target,
            "key": frame_key(pick.dataset, row["episode"], row["frame"]),
        }
        try:
            built = apply(chain, sample)
        except FastRangeError as e:  # a chunk no token of the set can say: the gate quarantines the episode
            raise BadRecord(
                QuarantineRecord(
                    pick.dataset,
                    ext.source_file,
                    f"{GATE_PREFIX}FAST coefficients outside the tokenizer set's fitted range ({e})",
                    ext.episode,
                    None,
                    pick.frame,
                    "actions",
                    ext.frames,
                )
            ) from e
        records.append(_sample_record(built, row, pick, emb, duration))
    SAMPLE.table([_plain(r) for r in records], ext.frames_path)  # validate before anything is written
    _sample_gate(task, records)
    for rec in records:
        shard, position = place(rec["key"], task.seed, task.shards)
        if shard not in task.skip:
            yield shard, position, to_members(rec), index_row(rec)


def _sample_gate(task: BuildTask, records: list[dict]) -> None:
    """The samples' quality gate: one failing sample quarantines the episode (for the dataset built)."""
    if not records or not task.tokenizers:
        return
    vocab = max(r[1] for r in tokenizer_set_at(task.tokenizers).ranges.values() if r)
    emb, ext = task.embodiment, task.extracted
    bad = failures(sample_table(records, emb), f"samples_{task.source.kind}", sample_expectations(emb, vocab))
    if bad:
        f = bad[0]
        dataset = task.annotation.dataset if task.annotation else ext.dataset
        raise BadRecord(
            QuarantineRecord(
                dataset,
                ext.source_file,
                f"{f.reason()} in the built sample; {len(bad)} failure(s) in all",
                ext.episode,
                None,
                int(records[f.row]["frame"]),
                f.column,
                ext.frames,
            )
        )


def index_row(rec: dict) -> dict:
    row = {k: rec[k] for k in ("key", "episode", "frame", "kind", "split", "success", "duration")}
    row["prompt_chars"] = len(rec["prompt"])
    row["fast_tokens"] = len(rec["fast_ids"]) if rec.get("fast_ids") is not None else 0
    row["input_tokens"] = len(rec["input_ids"])
    return row


INDEX_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("offset", pa.int64()),
        ("length", pa.int64()),
        ("episode", pa.int64()),
        ("frame", pa.int64()),
        ("kind", pa.string()),
        ("split", pa.string()),
        ("success", pa.bool_()),
        ("duration", pa.float64()),
        ("prompt_chars", pa.int64()),
        ("fast_tokens", pa.int64()),
        ("input_tokens", pa.int64()),
        (
            "crc32",
            pa.int64(),
        ),  # zlib crc32 of the sample's bytes [offset, offset + length): read_sample checks it
    ]
)


def index_part_file(dataset: str, shard: int) -> str:
    return f"{WORK_DIR}/index/{dataset}/{shard:06d}.parquet"


def write_shard_group(out: str, dataset: str, shard: int, items: list[tuple[int, dict, dict]]) -> ShardResult:
    """Write one shard from its (position, entry, index row) items, ordered by position, and its part
    of the index (one row per sample with the sample's byte range in the tar)."""
    items = sorted(items, key=lambda it: (it[0], it[1]["__key__"]))
    store, rel = store_for(out), shard_path(dataset, shard)
    result = write_shard(store, rel, (entry for _, entry, _ in items))
    rows = []
    for (key, offset, length, crc), (_, _, meta) in zip(result.offsets, items, strict=True):
        rows.append({**meta, "key": key, "shard": rel, "offset": offset, "length": length, "crc32": crc})
    with store.open_write(index_part_file(dataset, shard)) as f:
        pq.write_table(pa.Table.from_pylist(rows, schema=INDEX_SCHEMA), f)
    return result
