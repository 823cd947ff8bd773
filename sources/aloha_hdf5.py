"""Reader for ALOHA and Mobile-ALOHA HDF5 episodes (one file per episode).

Layout: `/observations/qpos` (T, 14), `/observations/images/<camera>` either raw (T, H, W, 3) uint8 or,
when the root attribute `compress` is true, JPEG bytes (T, L) zero-padded with lengths in
`/compress_len` (cameras, T); `/action` (T, 14) and, on Mobile ALOHA, `/base_action` (T, 2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import h5py
import numpy as np

from vlamix.schemas.embodiment import CAMERA_SLOTS, Embodiment
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.sources.config import RobotSource, SourcesFile, resolve_files
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.frames import EpisodeFacts, camera_slot, frame_row
from vlamix.sources.success import success_value
from vlamix.transforms.image import decode_jpeg

__all__ = ["list_episodes", "read_episode"]

SUFFIXES = (".hdf5", ".h5")
STATE_KEY = "/observations/qpos"
ACTION_KEYS = ("/action", "/base_action")
IMAGES_GROUP = "/observations/images"
_HASH_BLOCK = 64


def list_episodes(sources: SourcesFile, source: RobotSource) -> list[EpisodeRef]:
    files = resolve_files(sources.root, source.path, SUFFIXES)
    return [
        EpisodeRef(
            source.name,
            i,
            str(p),
            str(p.relative_to(sources.root)) if p.is_relative_to(sources.root) else str(p),
        )
        for i, p in enumerate(files)
    ]


def _as_list(value: str | list[str] | None) -> list[str] | None:
    return [value] if isinstance(value, str) else value


def _action_keys(f: h5py.File, source: RobotSource, emb: Embodiment) -> list[str]:
    keys = _as_list(source.keys.action)
    if keys:
        return keys
    wants_base = any(d.kind == "base_velocity" for d in emb.action)
    return [k for k in ACTION_KEYS if k == "/action" or (wants_base and k in f)]


class _Episode:
    """Open file + the checks that turn a malformed file into a quarantine record naming it."""

    def __init__(self, f: h5py.File, ref: EpisodeRef):
        self.f, self.ref = f, ref

    def bad(
        self, reason: str, field: str | None = None, frame: int | None = None, frames: int = 0
    ) -> BadRecord:
        return BadRecord(
            QuarantineRecord(
                self.ref.dataset, self.ref.source_file, reason, self.ref.index, None, frame, field, frames
            )
        )

    def array(self, key: str, width: int, what: str) -> np.ndarray:
        if key not in self.f:
            raise self.bad(
                f"no dataset {key}: the {what} is missing (set `keys: {{{what}: ...}}` in the sources file)",
                key,
            )
        data = np.asarray(self.f[key][()], dtype=np.float32)
        if data.ndim != 2:
            raise self.bad(f"{key} has shape {data.shape}, expected (frames, {width})", key)
        return data

    def finite(self, data: np.ndarray, field: str) -> None:
        bad_rows = np.flatnonzero(~np.isfinite(data).all(axis=1))
        if len(bad_rows):
            raise self.bad(f"non-finite value (NaN or inf) in {field}", field, int(bad_rows[0]), len(data))


def read_episode(ref: EpisodeRef, source: RobotSource, emb: Embodiment) -> Iterator[dict]:
    """Yield one frame record (a dict matching FRAME) per step of the episode file. Raises BadRecord
    for a file that cannot become frames: unreadable, missing datasets, wrong widths, NaNs."""
    try:
        f = h5py.File(ref.path, "r")
    except OSError as e:
        raise BadRecord(
            QuarantineRecord(ref.dataset, ref.source_file, f"cannot open as HDF5: {e}", ref.index)
        ) from e
    with f:
        ep = _Episode(f, ref)
        state_keys = _as_list(source.keys.state) or [STATE_KEY]
        state = np.concatenate([ep.array(k, emb.state_dim, "state") for k in state_keys], axis=1)
        action_keys = _action_keys(f, source, emb)
        action = np.concatenate([ep.array(k, emb.action_dim, "action") for k in action_keys], axis=1)
        n = len(state)
        for name, arr, want, keys in (
            ("state", state, emb.state_dim, state_keys),
            ("action", action, emb.action_dim, action_keys),
        ):
            if arr.shape[1] != want:
                raise ep.bad(
                    f"{name} has {arr.shape[1]} columns ({' + '.join(keys)}), the embodiment spec {emb.name} says {want}",
                    name,
                    frames=n,
                )
        if len(action) != n:
            raise ep.bad(f"{len(action)} action rows but {n} state rows", "action", frames=n)
        ep.finite(state, "state")
        ep.finite(action, "action")
        cameras = _cameras(ep, source, emb, n)
        digest = hashlib.blake2b(digest_size=16)
        digest.update(state.tobytes())
        digest.update(action.tobytes())
        for _, raw in cameras:
            for start in range(0, n, _HASH_BLOCK):  # a block of frames at a time: raw video is large
                digest.update(np.ascontiguousarray(raw[start : start + _HASH_BLOCK]).tobytes())
        success = success_value(
            source.success, lambda k: f.attrs[k] if k in f.attrs else (f[k][()] if k in f else None)
        )
        facts = EpisodeFacts(ref, source, emb, n, digest.hexdigest(), success)
        task = _instruction(f, source)
        compressed = bool(f.attrs.get("compress", False))
        for i in range(n):
            images = {slot: _decode(ep, raw[i], i, compressed, slot) for slot, raw in cameras}
            yield frame_row(facts, i, state[i], action[i], i / emb.control_rate_hz, task, images)


def _cameras(ep: _Episode, source: RobotSource, emb: Embodiment, n: int) -> list[tuple[str, h5py.Dataset]]:
    """(slot, dataset) per mapped camera, in slot order. A camera the spec maps to null is dropped on
    purpose; one it does not know at all is an error (silently losing a view is worse)."""
    group = ep.f.get(IMAGES_GROUP)
    mapping = {**emb.cameras, **source.keys.cameras}
    found: dict[str, h5py.Dataset] = {}
    for native in sorted(group.keys()) if group is not None else []:
        slot, problem = camera_slot(native, source, emb)
        if problem:
            raise ep.bad(problem, f"{IMAGES_GROUP}/{native}", frames=n)
        if slot is None or slot in found:
            continue
        ds = group[native]
        if ds.shape[0] != n:
            raise ep.bad(
                f"camera {native} has {ds.shape[0]} frames, the episode has {n}",
                f"{IMAGES_GROUP}/{native}",
                frames=n,
            )
        found[slot] = ds
    if not found:
        raise ep.bad(
            f"no camera under {IMAGES_GROUP} maps to a slot (spec {emb.name} knows {sorted(mapping)})",
            IMAGES_GROUP,
            frames=n,
        )
    return [(slot, found[slot]) for slot in CAMERA_SLOTS if slot in found]


def _decode(ep: _Episode, raw: np.ndarray, i: int, compressed: bool, slot: str) -> np.ndarray:
    if not compressed:
        if raw.ndim != 3 or raw.shape[2] != 3:
            raise ep.bad(f"image of shape {raw.shape}, expected (H, W, 3)", f"image_{slot}", i)
        return raw
    # The zero padding after the JPEG's end marker is ignored by the decoder (as ALOHA's own loader
    # relies on), so /compress_len, whose row order is not recorded in the file, is not needed.
    try:
        return decode_jpeg(raw.tobytes())
    except OSError as e:
        raise ep.bad(f"JPEG does not decode: {e}", f"image_{slot}", i) from e


def _instruction(f: h5py.File, source: RobotSource) -> str | None:
    key = source.keys.instruction
    if key:
        if key in f.attrs:
            value = f.attrs[key]
        elif key in f:
            value = f[key][()]
        else:
            value = None
        if value is not None:
            return value.decode() if isinstance(value, bytes) else str(value)
    return source.task
