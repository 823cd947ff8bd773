"""The sample, typed: one dataclass for every kind (robot frames, HL / VI spans, web items), built by the
kinds' build tasks and turned here, in one place, into the record the SAMPLE schema validates, the
members of its webdataset entry and its index row."""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache

import numpy as np
import pyarrow as pa

from vlamix.schemas.embodiment import CAMERA_SLOTS
from vlamix.schemas.frame import image_column
from vlamix.schemas.sample import SAMPLE
from vlamix.shards.members import to_members
from vlamix.transforms.image import black_jpeg

__all__ = ["INDEX_SCHEMA", "Sample"]

Array = np.ndarray | list | None


@dataclass(frozen=True)
class Sample:
    """One training example before it is written. `images` holds one JPEG per camera slot, in
    CAMERA_SLOTS order, None for a slot the source has none for (it gets the black stand-in and a False
    in `image_mask`). Robot-only fields stay None for web items, and `item` / `turns` for robot frames."""

    key: str
    dataset: str
    kind: str
    split: str
    images: tuple[bytes | None, ...]
    prompt: str
    input_ids: Array = None
    loss_mask: Array = None
    target: str | None = None
    embodiment: str | None = None
    control_mode: str | None = None
    episode: int | None = None
    frame: int | None = None
    item: int | None = None
    success: bool | None = None
    environment: str | None = None  # where the episode was recorded (docs/design.md §24)
    timestamp: float | None = None
    duration: float | None = None
    state: Array = None
    state_dim_mask: Array = None
    actions: Array = None
    action_dim_mask: Array = None
    action_is_pad: Array = None
    fast_ids: Array = None
    turns: list[dict] | None = None

    def __post_init__(self) -> None:
        if len(self.images) != len(CAMERA_SLOTS):
            raise ValueError(f"{self.key}: {len(self.images)} images for {len(CAMERA_SLOTS)} camera slots")

    def record(self) -> dict:
        """The SAMPLE record: every schema field, in the schema's order, arrays as they are."""
        rec = {name: getattr(self, name) for name in _own_fields()}
        rec["image_mask"] = [img is not None for img in self.images]
        for slot, img in zip(CAMERA_SLOTS, self.images, strict=True):
            rec[image_column(slot)] = img if img is not None else black_jpeg()
        return {name: rec[name] for name in _record_fields()}

    def plain_record(self) -> dict:
        """`record()` with numpy arrays as lists (what `SAMPLE.table` takes)."""
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in self.record().items()}

    def members(self) -> dict[str, bytes | str]:
        return to_members(self.record())

    def index_row(self) -> dict:
        """The sample's row of the dataset's index, less where it lies (the shard writer adds that)."""
        return {
            "key": self.key,
            "episode": self.episode,
            "frame": self.frame,
            "kind": self.kind,
            "split": self.split,
            "success": self.success,
            "environment": self.environment,
            "duration": self.duration,
            "prompt_chars": len(self.prompt),
            "fast_tokens": len(self.fast_ids) if self.fast_ids is not None else 0,
            "input_tokens": len(self.input_ids) if self.input_ids is not None else 0,
        }


@cache
def _own_fields() -> tuple[str, ...]:
    """Sample's fields but `images` (dataclasses.fields() is slow to call once per sample)."""
    return tuple(f.name for f in fields(Sample) if f.name != "images")


@cache
def _record_fields() -> tuple[str, ...]:
    return tuple(f.name for f in SAMPLE.fields)


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
        ("environment", pa.string()),  # where the episode was recorded; null for web data
        ("duration", pa.float64()),
        ("prompt_chars", pa.int64()),
        ("fast_tokens", pa.int64()),
        ("input_tokens", pa.int64()),
        # zlib crc32 of the sample's bytes [offset, offset + length): read_sample checks it
        ("crc32", pa.int64()),
    ]
)
