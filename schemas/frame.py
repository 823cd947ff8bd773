"""The frame record: one row per robot frame, in the embodiment's native units and dim order."""

from __future__ import annotations

import pyarrow as pa

from vlamix.schemas.checks import key_pattern, one_of
from vlamix.schemas.embodiment import CAMERA_SLOTS
from vlamix.schemas.versioning import RecordSchema, doc_field

__all__ = ["FRAME", "ROBOT_KINDS", "SPLITS", "frame_key", "image_column"]

ROBOT_KINDS = ("MM", "ME", "CE")
SPLITS = ("train", "val", "test")


def frame_key(dataset: str, episode: int, frame: int) -> str:
    return f"{dataset}/{episode:06d}/{frame:06d}"


def image_column(slot: str) -> str:
    return f"image_{slot}"


FRAME = RecordSchema(
    name="frame",
    version=2,  # 2: environment
    doc="One row per robot frame, written by extract in the embodiment's native units and dim order. "
    "Episode-level fields ride on every frame.",
    fields=(
        doc_field("key", pa.string(), "`{dataset}/{episode:06d}/{frame:06d}`: unique within a layout."),
        doc_field("dataset", pa.string(), "Dataset name from the sources file (`[a-z0-9_]+`)."),
        doc_field(
            "kind",
            pa.string(),
            "Source kind: MM (mobile manipulator), ME (static arm), CE (cross-embodiment).",
        ),
        doc_field(
            "embodiment",
            pa.string(),
            "Name of the embodiment spec that gives every state/action dim its meaning.",
        ),
        doc_field("episode", pa.int64(), "Episode index within the dataset (stable across runs)."),
        doc_field("frame", pa.int64(), "Frame index within the episode, from 0."),
        doc_field("timestamp", pa.float64(), "Seconds from the episode's start."),
        doc_field(
            "state",
            pa.list_(pa.float32()),
            "Native proprioceptive state, dims in the embodiment's declared order.",
        ),
        doc_field(
            "action",
            pa.list_(pa.float32()),
            "Native action commanded at this frame, dims in the embodiment's declared order.",
        ),
        *(
            doc_field(
                image_column(slot),
                pa.binary(),
                f"JPEG of the camera in slot `{slot}`, resized with padding to 224x224; null when the embodiment has no such camera.",
                nullable=True,
            )
            for slot in CAMERA_SLOTS
        ),
        doc_field(
            "task",
            pa.string(),
            "The episode's task instruction; null when the source has none.",
            nullable=True,
        ),
        doc_field(
            "subtask",
            pa.string(),
            "High-level subtask label the source itself records at this time; null when none. HL datasets' spans are not written here: they join the frames at build.",
            nullable=True,
        ),
        doc_field(
            "verbal_instruction",
            pa.string(),
            "Verbal instruction the source itself records at this time; null when none. VI datasets' spans join the frames at build.",
            nullable=True,
        ),
        doc_field(
            "split",
            pa.string(),
            "Episode split: train, val or test (the source's own, else seeded by content hash).",
        ),
        doc_field(
            "success",
            pa.bool_(),
            "Whether the episode succeeded; null when the source does not say.",
            nullable=True,
        ),
        doc_field(
            "environment",
            pa.string(),
            "Where the episode was recorded (room, home, site), from the sources file's `environment:` (a "
            "constant, a field of the source or a pattern over the file path); null when it says none.",
            nullable=True,
        ),
        doc_field("length", pa.int64(), "Number of frames in the episode."),
        doc_field(
            "episode_hash",
            pa.string(),
            "Content hash (blake2b-128, hex) of the episode's native arrays and images: equal episodes are duplicates.",
        ),
        doc_field(
            "source_file", pa.string(), "Raw file the frame was read from, relative to the sources file."
        ),
    ),
    checks=(
        one_of("kind", ROBOT_KINDS),
        one_of("split", SPLITS),
        key_pattern(r"^[a-z0-9_]+/\d{6}/\d{6}$", "dataset/000012/000345"),
    ),
)
