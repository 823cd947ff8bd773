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
from vlamix.sources.frames import EpisodeFacts, camera_slot, declared_size_problem, frame_row, one_line
from vlamix.sources.success import success_value
from vlamix.transforms.image import decode_jpeg

__all__ = ["list_episodes", "read_episode"]

SUFFIXES = (".hdf5", ".h5")
STATE_KEY = "/observations/qpos"
ACTION_KEYS = ("/action", "/base_action")
IMAGES_GROUP = "/observations/images"
_HASH_BLOCK_BYTES = 64 << 20  # camera bytes read at once while hashing an episode


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
        ds = self.f[key]
        problem = declared_size_problem(ds.shape, ds.dtype.itemsize)
        if problem:
            raise self.bad(f"{key} {problem}", key)
        try:
            data = np.asarray(ds[()], dtype=np.float32)
        except (OSError, ValueError, TypeError) as e:
            raise self.bad(
                f"cannot read {key}: {one_line(e)} (a corrupted file? re-export or re-copy it)", key
            ) from e
        if data.ndim != 2:
            raise self.bad(f"{key} has shape {data.shape}, expected (frames, {width})", key)
        return data

    def columns(self, keys: list[str], width: int, what: str, rows: tuple[int, str] | None) -> np.ndarray:
        """The datasets of `keys` side by side; each must have as many rows as `rows` = (count, the
        dataset that set it), else as the first of `keys`."""
        parts = []
        for key in keys:
            part = self.array(key, width, what)
            want, origin = rows or (len(part), key)
            rows = want, origin
            if len(part) != want:
                raise self.bad(
                    f"{key} has {len(part)} rows, {origin} has {want}: fields that disagree in length "
                    "(a truncated recording?)",
                    key,
                    frames=want,
                )
            parts.append(part)
        return np.concatenate(parts, axis=1)

    def finite(self, data: np.ndarray, field: str) -> None:
        bad_rows = np.flatnonzero(~np.isfinite(data).all(axis=1))
        if len(bad_rows):
            raise self.bad(f"non-finite value (NaN or inf) in {field}", field, int(bad_rows[0]), len(data))


def read_episode(ref: EpisodeRef, source: RobotSource, emb: Embodiment) -> Iterator[dict]:
    """Yield one frame record (a dict matching FRAME) per step of the episode file. Raises BadRecord
    for a file that cannot become frames: unreadable, missing datasets, wrong widths, NaNs, sizes above
    the caps (sources/frames.py), corrupted chunks, images that do not decode."""
    try:
        f = h5py.File(ref.path, "r")
    except OSError as e:
        raise BadRecord(
            QuarantineRecord(ref.dataset, ref.source_file, f"cannot open as HDF5: {one_line(e)}", ref.index)
        ) from e
    with f:
        ep = _Episode(f, ref)
        state_keys = _as_list(source.keys.state) or [STATE_KEY]
        state = ep.columns(state_keys, emb.state_dim, "state", None)
        n = len(state)
        action_keys = _action_keys(f, source, emb)
        action = ep.columns(action_keys, emb.action_dim, "action", (n, state_keys[0]))
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
        ep.finite(state, "state")
        ep.finite(action, "action")
        cameras = _cameras(ep, source, emb, n)
        digest = hashlib.blake2b(digest_size=16)
        digest.update(state.tobytes())
        digest.update(action.tobytes())
        for _, raw in cameras:
            for block in _blocks(ep, raw, n):  # a few frames at a time: raw video is large
                digest.update(np.ascontiguousarray(block).tobytes())
        success = success_value(
            source.success, lambda k: f.attrs[k] if k in f.attrs else (f[k][()] if k in f else None)
        )
        facts = EpisodeFacts(ref, source, emb, n, digest.hexdigest(), success)
        task = _instruction(ep, source, n)
        compressed = bool(f.attrs.get("compress", False))
        for i in range(n):
            images = {slot: _decode(ep, raw, i, compressed, slot) for slot, raw in cameras}
            yield frame_row(facts, i, state[i], action[i], i / emb.control_rate_hz, task, images)


def _blocks(ep: _Episode, ds: h5py.Dataset, n: int) -> Iterator[np.ndarray]:
    """The frames of a camera dataset, a block of at most _HASH_BLOCK_BYTES at a time. A chunk that does
    not read (corrupted bytes inside its compressed data) is quarantined with its frame."""
    per_frame = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize)
    step = max(1, _HASH_BLOCK_BYTES // per_frame)
    for start in range(0, n, step):
        try:
            block = ds[start : start + step]
        except OSError:
            for i in range(start, min(n, start + step)):
                _read_frame(ep, ds, i)  # names the first frame that does not read
            raise
        yield block


def _read_frame(ep: _Episode, ds: h5py.Dataset, i: int) -> np.ndarray:
    try:
        return ds[i]
    except OSError as e:
        raise ep.bad(
            f"frame {i} of {ds.name} does not read: {one_line(e)} (a corrupted chunk? re-export or re-copy the file)",
            ds.name,
            i,
            ds.shape[0],
        ) from e


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
        too_big = declared_size_problem(ds.shape, ds.dtype.itemsize, image=True)
        if too_big:
            raise ep.bad(f"camera {native} {too_big}", f"{IMAGES_GROUP}/{native}", frames=n)
        found[slot] = ds
    if not found:
        raise ep.bad(
            f"no camera under {IMAGES_GROUP} maps to a slot (spec {emb.name} knows {sorted(mapping)})",
            IMAGES_GROUP,
            frames=n,
        )
    return [(slot, found[slot]) for slot in CAMERA_SLOTS if slot in found]


def _decode(ep: _Episode, ds: h5py.Dataset, i: int, compressed: bool, slot: str) -> np.ndarray:
    raw = _read_frame(ep, ds, i)
    if not compressed:
        if raw.ndim != 3 or raw.shape[2] != 3:
            raise ep.bad(f"image of shape {raw.shape}, expected (H, W, 3)", f"image_{slot}", i, ds.shape[0])
        return raw
    # The zero padding after the JPEG's end marker is ignored by the decoder (as ALOHA's own loader
    # relies on), so /compress_len, whose row order is not recorded in the file, is not needed.
    try:
        return decode_jpeg(raw.tobytes())
    except OSError as e:
        raise ep.bad(f"JPEG does not decode: {one_line(e)}", f"image_{slot}", i, ds.shape[0]) from e


def _instruction(ep: _Episode, source: RobotSource, n: int) -> str | None:
    key, f = source.keys.instruction, ep.f
    if key:
        if key in f.attrs:
            value = f.attrs[key]
        elif key in f:
            value = f[key][()]
        else:
            value = None
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ep.bad(
                    f"instruction {key!r} is not UTF-8 ({e}): re-write it as UTF-8 text", key, 0, n
                ) from e
        if value is not None:
            return str(value)
    return source.task
