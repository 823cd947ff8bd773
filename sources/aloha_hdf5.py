"""Reader for ALOHA and Mobile-ALOHA HDF5 episodes (one file per episode).

Layout: `/observations/qpos` (T, 14), `/observations/images/<camera>` either raw (T, H, W, 3) uint8 or,
when the root attribute `compress` is true, JPEG bytes (T, L) zero-padded with lengths in
`/compress_len` (cameras, T); `/action` (T, 14) and, on Mobile ALOHA, `/base_action` (T, 2).

Rules (each refuses, never guesses):
- Episode id: the number that ends the file name's stem after a `_`, `-`, `.` or space, or is the whole
  stem (`episode_0.hdf5, episode_2.hdf5, episode_3.hdf5` -> 0, 2, 3: a deleted demo shifts no other),
  when every file's stem ends in one and no two are equal; otherwise the file's position in natural order.
- Task: `keys.instruction` names a root attribute or a dataset: one text, a (1,) array, or one text per
  step (a text that changes within the episode stays per step); a step without text is under the
  instruction in force (sources/per_step.py). Without `keys.instruction` and `task:` nothing gives a task:
  a configuration error at listing; an episode whose instruction is empty, without `task:`, is quarantined.
- State and action: numeric datasets of (T, width) or (T,) (one dim); bools and strings are refused.
- Cameras: planned by sources/frames.py (`plan_cameras`): an unknown camera or two cameras on one slot are
  a configuration error when the first file shows them (it is opened at listing), a quarantine for a later
  file; a camera with `channel_order: bgr` is flipped to RGB.
- Rate: where the file has timestamps (TIMESTAMP_KEYS, seconds) their median period must match the spec's
  control rate; without timestamps there is nothing to check.
- Success: a constant, or an attribute or dataset reduced by the declared rule (sources/success.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import CAMERA_SLOTS, Embodiment
from vlamix.schemas.image_codec import CameraImage, decode_camera
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.sources.config import RobotSource, SourcesFile, resolve_files
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.fields import FieldError, numeric_matrix, per_step_text
from vlamix.sources.frames import (
    EpisodeFacts,
    camera_slot,
    declared_size_problem,
    frame_row,
    one_line,
    plan_cameras,
    to_rgb,
)
from vlamix.sources.location import Unreachable, display, readable
from vlamix.sources.per_step import bad_text_step, measured_rate_problem, no_task, tasks_in_force
from vlamix.sources.success import success_rule, success_value
from vlamix.stage_clock import stage

__all__ = ["TIMESTAMP_KEYS", "list_episodes", "read_episode"]

SUFFIXES = (".hdf5", ".h5")
STATE_KEY = "/observations/qpos"
ACTION_KEYS = ("/action", "/base_action")
IMAGES_GROUP = "/observations/images"
TIMESTAMP_KEYS = ("/observations/timestamps", "/observations/timestamp", "/timestamps", "/timestamp")
_HASH_BLOCK_BYTES = 64 << 20  # camera bytes read at once while hashing an episode
_TRAILING_NUMBER = re.compile(r"(?:^|[_\-. ])(\d+)$")  # episode_12, demo-3, 000042; not hdf5


def _relative(path: Path, root: Path) -> str:
    return display(path, root)


@contextlib.contextmanager
def _hdf5(path: str | Path) -> Iterator[h5py.File]:
    """The episode file open in h5py: by path when local, through a buffered range-reading file object
    when at a URL (sources/location.py)."""
    with readable(path) as where, h5py.File(where, "r") as f:
        yield f


def _episode_ids(files: list[Path]) -> list[int]:
    """The number ending each file's stem (after a separator) when every stem ends in one and they are
    unique; else the files' positions (they come in natural order)."""
    found = [_TRAILING_NUMBER.search(p.stem) for p in files]
    numbers = [int(m.group(1)) for m in found if m is not None]
    if len(numbers) == len(files) and len(set(numbers)) == len(numbers):
        return numbers
    return list(range(len(files)))


def list_episodes(sources: SourcesFile, source: RobotSource) -> list[EpisodeRef]:
    """One ref per file. Raises ConfigError when nothing can give the episodes a task, or when the first
    file's cameras do not map onto the spec's slots (checked here, before any job starts)."""
    if not source.keys.instruction and not source.task:
        raise ConfigError(
            f"no task for the episodes of {source.path!r}: the sources file sets neither `task:` nor "
            "`keys: {instruction: ...}`, so every episode would train on an empty prompt; set `task:` (the "
            "text every episode is trained with) or name the attribute or dataset holding each episode's "
            "instruction in `keys: {instruction: ...}`"
        )
    files = resolve_files(sources.root, source.path, SUFFIXES)
    _check_first_cameras(files[0], _relative(files[0], sources.root), source, sources.embodiment(source))
    return [
        EpisodeRef(source.name, index, str(p), _relative(p, sources.root))
        for index, p in zip(_episode_ids(files), files, strict=True)
    ]


def _check_first_cameras(path: Path, rel: str, source: RobotSource, emb: Embodiment) -> None:
    try:
        opened = contextlib.ExitStack()
        f = opened.enter_context(_hdf5(path))
    except OSError:
        return  # a file that does not open is quarantined when read, with its reason
    with opened:
        group = f.get(IMAGES_GROUP)
        natives = sorted(group.keys()) if isinstance(group, h5py.Group) else []
    _, problem = plan_cameras(natives, source, emb)
    if problem:
        raise ConfigError(f"{rel} (the first episode file, opened at listing): {problem}")


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

    def read(self, key: str) -> object:
        """A dataset's whole value, after its declared size is checked."""
        ds = self.f[key]
        if not isinstance(ds, h5py.Dataset):
            raise self.bad(f"{key} is a group, not a dataset", key)
        problem = declared_size_problem(ds.shape, ds.dtype.itemsize)
        if problem:
            raise self.bad(f"{key} {problem}", key)
        try:
            return ds[()]
        except (OSError, ValueError, TypeError) as e:
            raise self.bad(
                f"cannot read {key}: {one_line(e)} (a corrupted file? re-export or re-copy it)", key
            ) from e

    def lookup(self, key: str) -> object:
        """A root attribute, else a dataset, by name; None when the file has neither."""
        if key in self.f.attrs:
            return self.f.attrs[key]
        return self.read(key) if key in self.f else None

    def array(self, key: str, what: str) -> np.ndarray:
        if key not in self.f:
            raise self.bad(
                f"no dataset {key}: the {what} is missing (set `keys: {{{what}: ...}}` in the sources file)",
                key,
            )
        data = np.asarray(self.read(key))
        if data.ndim not in (1, 2):
            raise self.bad(f"{key} has shape {data.shape}, expected (frames, width) or (frames,)", key)
        try:
            return numeric_matrix(data, None, key)
        except FieldError as e:
            raise self.bad(f"{e}: the {what} must be numbers (check `keys: {{{what}: ...}}`)", key) from None

    def columns(self, keys: list[str], what: str, rows: tuple[int, str] | None) -> np.ndarray:
        """The datasets of `keys` side by side; each must have as many rows as `rows` = (count, the
        dataset that set it), else as the first of `keys`."""
        parts = []
        for key in keys:
            part = self.array(key, what)
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


def read_episode(
    ref: EpisodeRef, source: RobotSource, emb: Embodiment, *, box: int | None = None
) -> Iterator[dict]:
    """Yield one frame record (a dict matching FRAME) per step of the episode file. Raises BadRecord
    for a file that cannot become frames: unreadable, missing datasets, wrong widths or types, NaNs, sizes
    above the caps (sources/frames.py), corrupted chunks, images that do not decode, a rate that is not
    the spec's, cameras that do not map, a success or instruction value that is not one. With `box`, JPEG
    frames decode `Shrunk`, no smaller than fitting them into a box x box square needs."""
    try:
        opened = contextlib.ExitStack()
        f = opened.enter_context(_hdf5(ref.path))
    except Unreachable as e:
        raise BadRecord(QuarantineRecord(ref.dataset, ref.source_file, one_line(e), ref.index)) from e
    except OSError as e:
        raise BadRecord(
            QuarantineRecord(ref.dataset, ref.source_file, f"cannot open as HDF5: {one_line(e)}", ref.index)
        ) from e
    with opened:
        ep = _Episode(f, ref)
        state_keys = _as_list(source.keys.state) or [STATE_KEY]
        state = ep.columns(state_keys, "state", None)
        n = len(state)
        action_keys = _action_keys(f, source, emb)
        action = ep.columns(action_keys, "action", (n, state_keys[0]))
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
        _check_rate(ep, emb, n)
        cameras = _cameras(ep, source, emb, n)
        digest = hashlib.blake2b(digest_size=16)
        digest.update(state.tobytes())
        digest.update(action.tobytes())
        for _, raw, _ in cameras:
            for block in _blocks(ep, raw, n):  # a few frames at a time: raw video is large
                digest.update(np.ascontiguousarray(block).tobytes())
        facts = EpisodeFacts(ref, source, emb, n, digest.hexdigest(), _success(ep, source, n))
        tasks = _tasks(ep, source, n)
        compressed = bool(f.attrs.get("compress", False))
        for i in range(n):
            images = {
                slot: to_rgb(_decode(ep, raw, i, compressed, slot, box), order)
                for slot, raw, order in cameras
            }
            yield frame_row(facts, i, state[i], action[i], i / emb.control_rate_hz, tasks[i], images)


def _check_rate(ep: _Episode, emb: Embodiment, n: int) -> None:
    key = next((k for k in TIMESTAMP_KEYS if k in ep.f), None)
    if key is None:
        return  # no timestamps: nothing to measure, frames are at the spec's rate
    try:
        problem = measured_rate_problem(ep.read(key), n, emb, key)
    except FieldError as e:
        raise ep.bad(str(e), key, frames=n) from None
    if problem:
        raise ep.bad(problem, key, frames=n)


def _success(ep: _Episode, source: RobotSource, n: int) -> bool | None:
    try:
        return success_value(source.success, ep.lookup)
    except FieldError as e:
        rule = success_rule(source.success)
        raise ep.bad(f"{e} (the sources file's `success:`)", rule.field if rule else None, frames=n) from None


def _tasks(ep: _Episode, source: RobotSource, n: int) -> list[str | None]:
    key = source.keys.instruction
    value = ep.lookup(key) if key else None
    what = f"instruction {key!r}"
    try:
        texts = per_step_text(value, n, what)
    except FieldError as e:
        raise ep.bad(str(e), key, bad_text_step(value, n, what), n) from None
    tasks = tasks_in_force(texts, source.task)
    if tasks is None:
        if not key:
            missing = "the sources file names no instruction (`keys: {instruction: ...}`)"
        elif value is None:
            missing = f"the file has no attribute or dataset {key!r} (keys.instruction)"
        else:
            missing = f"the {what} is empty"
        raise ep.bad(no_task(missing), key, frames=n)
    return tasks


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


def _cameras(
    ep: _Episode, source: RobotSource, emb: Embodiment, n: int
) -> list[tuple[str, h5py.Dataset, str]]:
    """(slot, dataset, channel order) per mapped camera, in slot order. A camera mapped to null is dropped
    on purpose; one nobody mapped, or two on one slot, is an error (silently losing a view is worse)."""
    group = ep.f.get(IMAGES_GROUP)
    natives = sorted(group.keys()) if isinstance(group, h5py.Group) else []
    for native in natives:
        _, problem = camera_slot(native, source, emb)
        if problem:
            raise ep.bad(problem, f"{IMAGES_GROUP}/{native}", frames=n)
    plan, problem = plan_cameras(natives, source, emb)
    if problem:
        raise ep.bad(problem, IMAGES_GROUP, frames=n)
    if not plan.slots:
        raise ep.bad(
            f"no camera under {IMAGES_GROUP} maps to a slot (found {natives}; spec {emb.name} knows "
            f"{sorted({**emb.cameras, **source.keys.cameras})})",
            IMAGES_GROUP,
            frames=n,
        )
    out = []
    for slot in (s for s in CAMERA_SLOTS if s in plan.slots):
        native = plan.slots[slot]
        ds = group[native]  # type: ignore[index]
        where = f"{IMAGES_GROUP}/{native}"
        if not isinstance(ds, h5py.Dataset):
            raise ep.bad(f"camera {native} is a group, not a dataset of frames", where, frames=n)
        if ds.shape[:1] != (n,):
            frames = ds.shape[0] if ds.shape else 0
            raise ep.bad(f"camera {native} has {frames} frames, the episode has {n}", where, frames=n)
        too_big = declared_size_problem(ds.shape, ds.dtype.itemsize, image=True)
        if too_big:
            raise ep.bad(f"camera {native} {too_big}", where, frames=n)
        out.append((slot, ds, plan.orders[slot]))
    return out


def _decode(
    ep: _Episode, ds: h5py.Dataset, i: int, compressed: bool, slot: str, box: int | None
) -> CameraImage:
    raw = _read_frame(ep, ds, i)
    if not compressed:
        if raw.ndim != 3 or raw.shape[2] != 3 or raw.dtype != np.uint8:
            raise ep.bad(
                f"image of shape {raw.shape} and type {raw.dtype}, expected (H, W, 3) uint8",
                f"image_{slot}",
                i,
                ds.shape[0],
            )
        return raw
    # The zero padding after the JPEG's end marker is ignored by the decoder (as ALOHA's own loader
    # relies on), so /compress_len, whose row order is not recorded in the file, is not needed.
    try:
        with stage("decode"):
            return decode_camera(raw.tobytes(), box)
    except OSError as e:
        raise ep.bad(f"JPEG does not decode: {one_line(e)}", f"image_{slot}", i, ds.shape[0]) from e
