"""What every reader does the same way: map native cameras to slots and turn one step into a frame record."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlamix.schemas.embodiment import CAMERA_SLOTS, Embodiment
from vlamix.schemas.frame import frame_key, image_column
from vlamix.sources.config import RobotSource
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.split import content_split
from vlamix.transforms.image import ResizeWithPad, encode_jpeg

__all__ = ["EpisodeFacts", "camera_slot", "frame_row"]

_RESIZE = ResizeWithPad()


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
