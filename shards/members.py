"""A sample record <-> the members of its webdataset entry. Names are lowercase with one extension, so
plain webdataset, Hugging Face `datasets` and `ray.data` decode them as they are (.jpg, .npy, .txt, .json)."""

from __future__ import annotations

import io
import json
import re

import numpy as np

from vlamix.schemas.embodiment import CAMERA_SLOTS
from vlamix.schemas.frame import image_column

__all__ = ["ARRAY_MEMBERS", "META_FIELDS", "member_problem", "npy_bytes", "to_members"]

ARRAY_MEMBERS = {
    "image_mask": np.bool_,
    "state": np.float32,
    "state_dim_mask": np.bool_,
    "actions": np.float32,
    "action_dim_mask": np.bool_,
    "action_is_pad": np.bool_,
    "fast_ids": np.int32,
    "input_ids": np.int32,
    "loss_mask": np.bool_,
}
TEXT_MEMBERS = ("prompt", "target")
META_FIELDS = (
    "key",
    "dataset",
    "kind",
    "embodiment",
    "control_mode",
    "episode",
    "frame",
    "item",
    "split",
    "success",
    "timestamp",
    "duration",
)


# A member name: a relative key of plain path parts (`dataset/000012/000034`), a dot, an extension. Keys
# come from validated dataset names and numbers; anything else in a tar is refused on write and on read.
_MEMBER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*(/[A-Za-z0-9_][A-Za-z0-9_-]*)*\.[a-z0-9_]+(\.[a-z0-9_]+)*")


def member_problem(name: str) -> str | None:
    """Why `name` may not be a member of a shard (the writer's check, and every reader's), or None."""
    if "\\" in name:
        return "a backslash in its name"
    if name.startswith("/"):
        return "an absolute name"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "an empty, `.` or `..` path part"
    if not _MEMBER.fullmatch(name):
        return "not `<key>.<ext>` of plain path parts"
    return None


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def to_members(sample: dict) -> dict[str, bytes | str]:
    """Sample record (dict) -> webdataset entry. Null fields get no member; a dataset's samples all have
    the same nulls, so its shards keep one member set."""
    out: dict[str, bytes | str] = {"__key__": sample["key"]}
    for slot in CAMERA_SLOTS:
        out[f"{slot}.jpg"] = sample[image_column(slot)]
    for name, dtype in ARRAY_MEMBERS.items():
        if sample.get(name) is not None:
            out[f"{name}.npy"] = npy_bytes(np.asarray(sample[name], dtype=dtype))
    for name in TEXT_MEMBERS:
        if sample.get(name) is not None:
            out[f"{name}.txt"] = sample[name].encode()
    if sample.get("turns") is not None:
        out["turns.json"] = json.dumps(sample["turns"], sort_keys=True).encode()
    meta = {k: sample.get(k) for k in META_FIELDS}
    out["meta.json"] = json.dumps(meta, sort_keys=True).encode()
    return out
