"""What every reader does the same way: map native cameras to slots, check declared sizes against the
caps before reading, and turn one step into a frame record.

Caps on what one read may decompress to (a few KB of gzip, zstd or deflate can claim gigabytes):
MAX_EPISODE_FRAMES steps per episode, MAX_READ_BYTES per array or file read at once, and per image frame
schemas/image_codec.py's MAX_IMAGE_PIXELS. An input above a cap is quarantined, never read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlamix.schemas.embodiment import CAMERA_SLOTS, Embodiment
from vlamix.schemas.frame import frame_key, image_column
from vlamix.schemas.image_codec import MAX_IMAGE_PIXELS, CameraImage, Shrunk
from vlamix.sources.config import CameraKey, RobotSource
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.split import content_split

__all__ = [
    "MAX_EPISODE_FRAMES",
    "MAX_FRAME_BYTES",
    "MAX_READ_BYTES",
    "RATE_TOLERANCE",
    "CameraPlan",
    "EpisodeFacts",
    "camera_slot",
    "declared_size_problem",
    "frame_row",
    "one_line",
    "parquet_size_problem",
    "plan_cameras",
    "rate_problem",
    "to_rgb",
]

MAX_EPISODE_FRAMES = 1_000_000  # 5.5 hours at 50 Hz: far above any recorded episode
MAX_READ_BYTES = 1 << 30  # 1 GiB: one state or action array, one parquet file, decompressed
MAX_FRAME_BYTES = 3 * MAX_IMAGE_PIXELS  # one camera frame, raw RGB or encoded bytes


def one_line(e: BaseException) -> str:
    """A library's error message on one line (Arrow's and FFmpeg's span several): quarantine reasons are
    read one per line."""
    return " ".join(str(e).split())


def declared_size_problem(shape: tuple[int, ...], itemsize: int, image: bool = False) -> str | None:
    """Why an array of this declared shape must not be read (None when it may): more steps than
    MAX_EPISODE_FRAMES, more than MAX_READ_BYTES in all (numeric arrays) or MAX_FRAME_BYTES / pixels
    per frame (`image`: (frames, H, W, 3) raw or (frames, bytes) encoded)."""
    fix = "a decompression bomb or a corrupted header? (caps in sources/frames.py)"
    if shape and shape[0] > MAX_EPISODE_FRAMES:
        return f"declares {shape[0]:,} steps, above the cap of {MAX_EPISODE_FRAMES:,}: {fix}"
    per_frame = int(np.prod(shape[1:], dtype=np.int64)) * itemsize if len(shape) > 1 else itemsize
    if image and len(shape) == 4 and shape[1] * shape[2] > MAX_IMAGE_PIXELS:
        return (
            f"declares {shape[2]}x{shape[1]} frames ({shape[1] * shape[2] / 1e6:.1f} MP), above the cap of "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP: {fix}"
        )
    if image and per_frame > MAX_FRAME_BYTES:
        return f"declares {per_frame:,} bytes per frame, above the cap of {MAX_FRAME_BYTES:,}: {fix}"
    total = per_frame * (shape[0] if shape else 1)
    if not image and total > MAX_READ_BYTES:
        return f"declares {total:,} bytes, above the cap of {MAX_READ_BYTES:,}: {fix}"
    return None


def parquet_size_problem(metadata, groups: list[int] | None = None) -> str | None:
    """Why a parquet file (its `pq.FileMetaData`) must not be read (whole, or these row `groups`): the
    row groups declare more than MAX_READ_BYTES uncompressed."""
    groups = list(range(metadata.num_row_groups)) if groups is None else groups
    size = sum(metadata.row_group(i).total_byte_size for i in groups)
    if size > MAX_READ_BYTES:
        return (
            f"declares {size:,} bytes uncompressed, above the cap of {MAX_READ_BYTES:,} "
            "(sources/frames.py MAX_READ_BYTES): a decompression bomb, or split the file"
        )
    return None


def _camera_mapping(source: RobotSource, emb: Embodiment) -> dict[str, CameraKey | None]:
    """native name -> CameraKey (None: dropped on purpose); the sources file's keys override the spec's."""
    out: dict[str, CameraKey | None] = {n: CameraKey(s) if s else None for n, s in emb.cameras.items()}
    for native, key in source.keys.cameras.items():
        out[native] = key if isinstance(key, CameraKey) else (CameraKey(key) if key else None)
    return out


def camera_slot(native: str, source: RobotSource, emb: Embodiment) -> tuple[str | None, str | None]:
    """(slot, None) for a mapped camera, (None, None) for one mapped to null on purpose, and
    (None, problem) for a camera nobody mapped: silently losing a view is worse than an error."""
    mapping = _camera_mapping(source, emb)
    if native not in mapping:
        return None, (
            f"unknown camera {native!r}: map it to a slot (or to null to drop it) in the embodiment spec "
            f"{emb.name} or in the sources file's `keys: {{cameras: ...}}` (known camera names: "
            f"{sorted(mapping)})"
        )
    key = mapping[native]
    return (key.slot if key else None), None


@dataclass(frozen=True)
class CameraPlan:
    """Which native camera fills which slot, and in which channel order its frames were logged."""

    slots: dict[str, str]  # slot -> native name
    orders: dict[str, str]  # slot -> "rgb" | "bgr"


def plan_cameras(natives: list[str], source: RobotSource, emb: Embodiment) -> tuple[CameraPlan, str | None]:
    """Map the cameras a source has onto slots. The problem (second value) names an unknown camera with
    the names that are known, or two cameras that map to one slot (the shipped ALOHA specs alias
    `cam_high` and `top`: a file holding both would silently lose one): map one of them to null, or
    elsewhere, in the sources file's `keys: {cameras: ...}`."""
    mapping = _camera_mapping(source, emb)
    slots: dict[str, str] = {}
    orders: dict[str, str] = {}
    for native in sorted(natives):
        slot, problem = camera_slot(native, source, emb)
        if problem:
            return CameraPlan(slots, orders), problem
        if slot is None:
            continue
        if slot in slots:
            return CameraPlan(slots, orders), (
                f"cameras {slots[slot]!r} and {native!r} both map to slot {slot!r}: map one of them to null "
                f"(or to another slot) in the sources file's `keys: {{cameras: ...}}`"
            )
        slots[slot] = native
        orders[slot] = mapping[native].channel_order  # type: ignore[union-attr]
    return CameraPlan(slots, orders), None


def to_rgb(frame: CameraImage, channel_order: str) -> CameraImage:
    """An (H, W, 3) frame (or a Shrunk one) in RGB order: BGR-logged frames are flipped (a new array)."""
    if channel_order != "bgr":
        return frame
    flip = lambda pixels: np.ascontiguousarray(pixels[..., ::-1])  # noqa: E731
    return frame.map(flip) if isinstance(frame, Shrunk) else flip(frame)


RATE_TOLERANCE = 0.05  # a source's rate may differ from the spec's control_rate_hz by 5%


def rate_problem(declared_hz: float, emb: Embodiment, what: str) -> str | None:
    """Why a source's declared (or measured) rate does not fit the embodiment's control rate: chunks,
    durations and annotation times would all be wrong."""
    want = emb.control_rate_hz
    if not (declared_hz > 0) or abs(declared_hz - want) > RATE_TOLERANCE * want:
        return (
            f"{what} is {declared_hz:g} Hz, the embodiment spec {emb.name} says control_rate_hz {want:g}: "
            "use (or write) a spec at the data's rate, or resample the data"
        )
    return None


@dataclass(frozen=True)
class EpisodeFacts:
    """What every frame of one episode carries."""

    ref: EpisodeRef
    source: RobotSource
    emb: Embodiment
    length: int
    episode_hash: str
    success: bool | None
    environment: str | None  # sources/environment.py: the constant, the path pattern's or the field's name

    @property
    def split(self) -> str:
        """The source's own split, else the sources file's, else a seeded one by content hash."""
        return (
            self.ref.split or self.source.split or content_split(self.episode_hash, self.source.val_fraction)
        )


def frame_row(
    facts: EpisodeFacts,
    i: int,
    state: np.ndarray,
    action: np.ndarray,
    timestamp: float,
    task: str | None,
    images: dict[str, CameraImage],
) -> dict:
    """One frame row: the FRAME record with each camera as its native HxWx3 uint8 frame (`images` maps
    slots to them; a slot without one is None). The extract step resizes and encodes them
    (transforms/image.py EncodeCameras) before the row is written."""
    ref = facts.ref
    row = {
        "key": frame_key(ref.dataset, ref.index, i),
        "dataset": ref.dataset,
        "kind": facts.source.kind,
        "embodiment": facts.emb.name,
        "episode": ref.index,
        "frame": i,
        "timestamp": float(timestamp),
        "state": np.asarray(state, np.float32).tolist(),
        "action": np.asarray(action, np.float32).tolist(),
        "task": task or facts.source.task,
        "subtask": None,
        "verbal_instruction": None,
        "split": facts.split,
        "success": facts.success,
        "environment": facts.environment,
        "length": facts.length,
        "episode_hash": facts.episode_hash,
        "source_file": ref.source_file,
    }
    for slot in CAMERA_SLOTS:
        row[image_column(slot)] = images.get(slot)
    return row
