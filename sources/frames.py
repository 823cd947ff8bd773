"""What every reader does the same way: map native cameras to slots, check declared sizes against the
caps before reading, and turn one step into a frame record.

Caps on what one read may decompress to (a few KB of gzip, zstd or deflate can claim gigabytes):
MAX_EPISODE_FRAMES steps per episode, MAX_READ_BYTES per array or file read at once, and per image frame
transforms/image.py's MAX_IMAGE_PIXELS. An input above a cap is quarantined, never read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlamix.schemas.embodiment import CAMERA_SLOTS, Embodiment
from vlamix.schemas.frame import frame_key, image_column
from vlamix.sources.config import RobotSource
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.split import content_split
from vlamix.transforms.image import MAX_IMAGE_PIXELS, ResizeWithPad, encode_jpeg

__all__ = [
    "MAX_EPISODE_FRAMES",
    "MAX_FRAME_BYTES",
    "MAX_READ_BYTES",
    "EpisodeFacts",
    "camera_slot",
    "declared_size_problem",
    "frame_row",
    "one_line",
    "parquet_size_problem",
]

_RESIZE = ResizeWithPad()
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


def parquet_size_problem(metadata) -> str | None:
    """Why a parquet file (its `pq.FileMetaData`) must not be read whole: its row groups declare more
    than MAX_READ_BYTES uncompressed."""
    size = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    if size > MAX_READ_BYTES:
        return (
            f"declares {size:,} bytes uncompressed, above the cap of {MAX_READ_BYTES:,} "
            "(sources/frames.py MAX_READ_BYTES): a decompression bomb, or split the file"
        )
    return None


def camera_slot(native: str, source: RobotSource, emb: Embodiment) -> tuple[str | None, str | None]:
    """(slot, None) for a mapped camera, (None, None) for one mapped to null on purpose, and
    (None, problem) for a camera nobody mapped: silently losing a view is worse than an error."""
    mapping = {**emb.cameras, **source.keys.cameras}
    if native not in mapping:
        return None, (
            f"unknown camera {native!r}: map it to a slot (or to null to drop it) in the embodiment spec "
            f"{emb.name} or in the sources file's `keys: {{cameras: ...}}`"
        )
    return mapping[native], None


@dataclass(frozen=True)
class EpisodeFacts:
    """What every frame of one episode carries."""

    ref: EpisodeRef
    source: RobotSource
    emb: Embodiment
    length: int
    episode_hash: str
    success: bool | None

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
    images: dict[str, np.ndarray],
) -> dict:
    """One FRAME record; `images` maps slots to HxWx3 frames (resized with padding and JPEG-encoded here)."""
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
        "length": facts.length,
        "episode_hash": facts.episode_hash,
        "source_file": ref.source_file,
    }
    for slot in CAMERA_SLOTS:
        row[image_column(slot)] = encode_jpeg(_RESIZE(images[slot])) if slot in images else None
    return row
