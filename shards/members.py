"""A sample record <-> the members of its webdataset entry. Names are lowercase with one extension, so
plain webdataset, Hugging Face `datasets` and `ray.data` decode them as they are (.jpg, .npy, .txt, .json)."""

from __future__ import annotations

import io
import json
import math
import re
from functools import lru_cache

import numpy as np

from vlamix.schemas.embodiment import CAMERA_SLOTS
from vlamix.schemas.frame import image_column

__all__ = ["ARRAY_MEMBERS", "META_FIELDS", "member_problem", "npy_array", "npy_bytes", "to_members"]

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
    "environment",
    "timestamp",
    "duration",
)


# A member name: a relative key of plain path parts (`dataset/000012/000034`), a dot, an extension. Keys
# come from validated dataset names and numbers; anything else in a tar is refused on write and on read.
_MEMBER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*(/[A-Za-z0-9_][A-Za-z0-9_-]*)*\.[a-z0-9_]+(\.[a-z0-9_]+)*")


def member_problem(name: str) -> str | None:
    """Why `name` may not be a member of a shard (the writer's check, and every reader's), or None."""
    if _MEMBER.fullmatch(name):  # the common case first: no name it matches fails a check below
        return None
    if "\\" in name:
        return "a backslash in its name"
    if name.startswith("/"):
        return "an absolute name"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "an empty, `.` or `..` path part"
    return "not `<key>.<ext>` of plain path parts"


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


@lru_cache(maxsize=1024)
def _npy_header(header: bytes) -> tuple[np.dtype, tuple[int, ...], bool]:
    """(dtype, shape, fortran order) of one .npy header, parsed by numpy's own (literal) reader once per
    distinct header: a shard's arrays share a handful of them, and numpy parses each with `ast`."""
    fp = io.BytesIO(header)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    version = np.lib.format.read_magic(fp)
    if version not in read:
        raise ValueError(f".npy format version {version} (the shards' writer makes 1.0)")
    try:
        shape, fortran, dtype = read[version](fp)
    except (ValueError, SyntaxError) as e:  # numpy's messages may hold memory addresses: not repeated
        raise ValueError(f"malformed .npy header {header[10:80]!r} ({type(e).__name__})") from e
    if dtype.hasobject:
        raise ValueError("an object array (pickled Python objects) is not allowed in a shard")
    return dtype, shape, fortran


def npy_array(data: bytes) -> np.ndarray:
    """`npy_bytes`' inverse, a read-only view of `data` (no copy): what np.load(allow_pickle=False) gives,
    at a quarter of its cost on small arrays. Raises ValueError for bytes that are not a .npy array."""
    if data[:6] != b"\x93NUMPY" or len(data) < 12:
        raise ValueError(f"not a .npy array (starts {bytes(data[:8])!r})")
    size_bytes = 2 if data[6] == 1 else 4
    start = 8 + size_bytes + int.from_bytes(data[8 : 8 + size_bytes], "little")
    dtype, shape, fortran = _npy_header(bytes(data[:start]))
    count = math.prod(shape)
    if len(data) - start != count * dtype.itemsize:
        raise ValueError(f".npy holds {len(data) - start} data bytes, its header says {count} x {dtype}")
    return np.frombuffer(data, dtype, count, start).reshape(shape, order="F" if fortran else "C")


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
