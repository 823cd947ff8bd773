"""The sample record: one training example, written by build into shards (one per robot frame, with a
stride, or one per web item)."""

from __future__ import annotations

import pyarrow as pa

from vlamix.schemas.checks import key_pattern, one_of
from vlamix.schemas.embodiment import CAMERA_SLOTS, MAX_DIMS, MODEL_HORIZON
from vlamix.schemas.frame import SPLITS, image_column
from vlamix.schemas.versioning import RecordSchema, doc_field

__all__ = ["SAMPLE", "SAMPLE_KINDS"]

SAMPLE_KINDS = ("MM", "ME", "CE", "HL", "VI", "WD")

SAMPLE = RecordSchema(
    name="sample",
    version=2,  # 2: environment
    doc="One training example as it sits in a shard. Arrays are already normalized and padded to the "
    f"canonical layout: {MAX_DIMS} dims packed to the front, {MODEL_HORIZON} steps.",
    fields=(
        doc_field(
            "key", pa.string(), "The frame's or item's key; also the webdataset `__key__` in the shard."
        ),
        doc_field("dataset", pa.string(), "Dataset whose shards hold this sample."),
        doc_field("kind", pa.string(), "MM, ME, CE, HL, VI or WD: what a mixture weights."),
        doc_field("embodiment", pa.string(), "Embodiment spec name; null for web data.", nullable=True),
        doc_field(
            "control_mode", pa.string(), "joint or ee (end-effector); null for web data.", nullable=True
        ),
        doc_field("episode", pa.int64(), "Episode index; null for web data.", nullable=True),
        doc_field("frame", pa.int64(), "Frame index within the episode; null for web data.", nullable=True),
        doc_field("item", pa.int64(), "Item index; null for robot data.", nullable=True),
        doc_field("split", pa.string(), "train, val or test."),
        doc_field("success", pa.bool_(), "Episode success; null when unknown or web data.", nullable=True),
        doc_field(
            "environment",
            pa.string(),
            "Where the episode was recorded (HL/VI: the annotated robot episode's); null when the sources "
            "file gives none, and for web data.",
            nullable=True,
        ),
        doc_field(
            "timestamp", pa.float64(), "Seconds from the episode's start; null for web data.", nullable=True
        ),
        doc_field("duration", pa.float64(), "Episode duration in seconds; null for web data.", nullable=True),
        *(
            doc_field(
                image_column(slot),
                pa.binary(),
                f"JPEG 224x224 of slot `{slot}` (the web image goes to base_0); black when absent (see image_mask).",
            )
            for slot in CAMERA_SLOTS
        ),
        doc_field(
            "image_mask",
            pa.list_(pa.bool_(), len(CAMERA_SLOTS)),
            f"Presence of each camera slot, in the order {list(CAMERA_SLOTS)}.",
        ),
        doc_field(
            "state",
            pa.list_(pa.float32(), MAX_DIMS),
            "Normalized state, real dims first, zeros after; null for web data.",
            nullable=True,
        ),
        doc_field(
            "state_dim_mask",
            pa.list_(pa.bool_(), MAX_DIMS),
            "True on the state's real dims; null for web data.",
            nullable=True,
        ),
        doc_field(
            "actions",
            pa.list_(pa.list_(pa.float32(), MAX_DIMS), MODEL_HORIZON),
            f"Normalized action chunk [{MODEL_HORIZON}, {MAX_DIMS}]: actions[t : t+H], the last one repeated past the episode's end; null for web data.",
            nullable=True,
        ),
        doc_field(
            "action_dim_mask",
            pa.list_(pa.bool_(), MAX_DIMS),
            "True on the action's real dims; null for web data.",
            nullable=True,
        ),
        doc_field(
            "action_is_pad",
            pa.list_(pa.bool_(), MODEL_HORIZON),
            "True on steps past the episode's end or past the embodiment's horizon (ignore them in losses); null for web data.",
            nullable=True,
        ),
        doc_field(
            "fast_ids",
            pa.list_(pa.int32()),
            "FAST tokens of the chunk's real dims and steps (tokenizer-set ids); null until a tokenizer set is applied, and for web data.",
            nullable=True,
        ),
        doc_field(
            "prompt",
            pa.string(),
            "The prompt text, e.g. `Task: pick up the cup, State: 12 200 ...;\\nAction: `.",
        ),
        doc_field(
            "target",
            pa.string(),
            "Text the model must produce before any actions (subtask, caption, answer); null when the target is actions only.",
            nullable=True,
        ),
        doc_field(
            "turns",
            pa.list_(
                pa.struct(
                    [
                        pa.field("kind", pa.string()),
                        pa.field("prompt", pa.string()),
                        pa.field("target", pa.string()),
                    ]
                )
            ),
            "Web items: every turn about the image (caption, vqa, detection); prompt and target hold one of them, "
            "chosen by a seeded hash of the key. Null for robot data.",
            nullable=True,
        ),
        doc_field(
            "input_ids",
            pa.list_(pa.int32()),
            "Token ids of prompt + target + FAST tokens; null until a tokenizer set is applied.",
            nullable=True,
        ),
        doc_field(
            "loss_mask",
            pa.list_(pa.bool_()),
            "True on the input_ids that carry loss (targets); null until a tokenizer set is applied.",
            nullable=True,
        ),
    ),
    checks=(
        one_of("kind", SAMPLE_KINDS),
        one_of("split", SPLITS),
        one_of("control_mode", ("joint", "ee")),
        key_pattern(r"^[a-z0-9_]+/\d+(/\d+)?$", "dataset/000012/000345 or dataset/00001234"),
    ),
)
