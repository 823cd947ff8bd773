"""What the HDF5 episode readers (aloha_hdf5, hdf5_keys) do alike: open a file, number episodes by their
names, and read one episode through `Episode`, whose checks turn a malformed part into a quarantine record
naming it (the dataset, the frame, the reason).

- Files open by path when local, through a buffered range-reading file object at a URL (sources/location.py).
- Episode ids (`trailing_ids`): the number ending each name (a file stem, a group name) after a `_`, `-`,
  `.` or space, or the whole name (`episode_0, episode_2, episode_3` -> 0, 2, 3: a deleted demo shifts no
  other), when every name ends in one and no two are equal; otherwise the positions (names come in natural
  order).
- An episode is a group: the file's root (one episode per file), or a group inside it (robomimic's
  `data/demo_3`). Datasets are read relative to it; `lookup` finds an attribute of the episode's group,
  else a dataset in it, else an attribute of the file's root.
- State and action (`state_and_action`): numeric datasets of (T, width) or (T,) (one dim), side by side in
  the order named, each as long as the first state dataset, as wide in all as the spec says, finite. Bools
  and strings are refused.
- Cameras: raw (T, H, W, 3) uint8 frames, or encoded image bytes (JPEG or PNG) per frame: a zero-padded
  (T, L) uint8 row (the decoders ignore the padding after the image's end), a variable-length uint8 array or
  bytes, a fixed-length bytes (S) or opaque (V) value. Anything else is refused, never converted.
- Rate: timestamps (seconds) have their median period checked against the spec's control rate.
- Task, success and environment: sources/per_step.py, sources/success.py and sources/environment.py,
  from `lookup`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator

import h5py
import numpy as np

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import Embodiment
from vlamix.schemas.image_codec import CameraImage, decode_camera
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.sources.config import RobotSource
from vlamix.sources.environment import environment_field, environment_of
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.fields import FieldError, numeric_matrix, per_step_text
from vlamix.sources.frames import declared_size_problem, one_line
from vlamix.sources.location import Location, Unreachable, readable
from vlamix.sources.per_step import bad_text_step, measured_rate_problem, no_task, tasks_in_force
from vlamix.sources.success import success_rule, success_value
from vlamix.stage_clock import stage

__all__ = [
    "Episode",
    "camera_dataset",
    "check_rate",
    "decode_frame",
    "episode_digest",
    "episode_environment",
    "episode_success",
    "episode_tasks",
    "frame_bytes",
    "has_field",
    "hdf5_file",
    "open_episode",
    "require_task",
    "state_and_action",
    "trailing_ids",
]

HASH_BLOCK_BYTES = 64 << 20  # camera bytes read at once while hashing an episode
VLEN_BLOCK_FRAMES = 256  # variable-length frames read at once (their size is not declared)
_TRAILING_NUMBER = re.compile(r"(?:^|[_\-. ])(\d+)$")  # episode_12, demo-3, 000042; not hdf5


@contextlib.contextmanager
def hdf5_file(path: str | Location) -> Iterator[h5py.File]:
    """The file open in h5py: by path when local, through a buffered range-reading file object when at a
    URL (sources/location.py)."""
    with readable(path) as where, h5py.File(where, "r") as f:
        yield f


@contextlib.contextmanager
def open_episode(ref: EpisodeRef) -> Iterator[h5py.File]:
    """The episode's file open; BadRecord for a file that does not open (or a listing-time `ref.error`)."""
    if ref.error:
        raise BadRecord(QuarantineRecord(ref.dataset, ref.source_file, ref.error, ref.index))
    try:
        opened = contextlib.ExitStack()
        f = opened.enter_context(hdf5_file(ref.path))
    except Unreachable as e:
        raise BadRecord(QuarantineRecord(ref.dataset, ref.source_file, one_line(e), ref.index)) from e
    except OSError as e:
        raise BadRecord(
            QuarantineRecord(ref.dataset, ref.source_file, f"cannot open as HDF5: {one_line(e)}", ref.index)
        ) from e
    with opened:
        yield f


def trailing_ids(names: list[str]) -> list[int]:
    """The number ending each name (after a separator) when every name ends in one and they are unique;
    else the names' positions (they come in natural order)."""
    found = [_TRAILING_NUMBER.search(name) for name in names]
    numbers = [int(m.group(1)) for m in found if m is not None]
    if len(numbers) == len(names) and len(set(numbers)) == len(numbers):
        return numbers
    return list(range(len(names)))


def require_task(source: RobotSource) -> None:
    """ConfigError when nothing can give the episodes a task (checked at listing)."""
    if not source.keys.instruction and not source.task:
        raise ConfigError(
            f"no task for the episodes of {source.path!r}: the sources file sets neither `task:` nor "
            "`keys: {instruction: ...}`, so every episode would train on an empty prompt; set `task:` (the "
            "text every episode is trained with) or name the attribute or dataset holding each episode's "
            "instruction in `keys: {instruction: ...}`"
        )


class Episode:
    """Open file + the episode's group in it (the root, by default) + the checks that turn a malformed part
    into a quarantine record naming it."""

    def __init__(self, f: h5py.File, ref: EpisodeRef, root: h5py.Group | None = None):
        self.f, self.ref = f, ref
        self.root = f if root is None else root

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
        ds = self.root[key]
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
        """An attribute of the episode's group, else a dataset in it, else an attribute of the file's root
        (one for all its episodes), by name; None when there is none."""
        if key in self.root.attrs:
            return self.root.attrs[key]
        path = key.lstrip("/")  # a dataset of the episode (the same path when the episode is the file)
        if path in self.root:
            return self.read(path)
        return self.f.attrs.get(key)

    def lacks(self, key: str) -> str:
        """What `lookup(key)` found missing, for a reason."""
        if self.root.name == "/":
            return f"the file has no attribute or dataset {key!r}"
        return f"the group {self.root.name} has no attribute or dataset {key!r}, the file's root no attribute"

    def array(self, key: str, what: str) -> np.ndarray:
        if key not in self.root:
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


def state_and_action(
    ep: Episode, emb: Embodiment, state_keys: list[str], action_keys: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(state, action) of the episode: each the named datasets side by side, as long as the first state
    dataset, as wide as the spec says, finite."""
    state = ep.columns(state_keys, "state", None)
    n = len(state)
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
    return state, action


def check_rate(ep: Episode, emb: Embodiment, n: int, key: str) -> None:
    """The timestamps (seconds) of dataset `key` fit the spec's control rate."""
    if key not in ep.root:
        raise ep.bad(
            f"no dataset {key}: the timestamps are missing (check `keys: {{timestamp: ...}}`)", key, frames=n
        )
    try:
        problem = measured_rate_problem(ep.read(key), n, emb, key)
    except FieldError as e:
        raise ep.bad(str(e), key, frames=n) from None
    if problem:
        raise ep.bad(problem, key, frames=n)


def episode_success(ep: Episode, source: RobotSource, n: int) -> bool | None:
    try:
        return success_value(source.success, ep.lookup)
    except FieldError as e:
        rule = success_rule(source.success)
        raise ep.bad(f"{e} (the sources file's `success:`)", rule.field if rule else None, frames=n) from None


def episode_environment(ep: Episode, source: RobotSource, n: int) -> str | None:
    """The sources file's `environment:`; a field is found by `lookup` (an attribute of the episode's
    group, a dataset in it, an attribute of the file's root) and must hold one text."""
    try:
        return environment_of(source.environment, ep.ref, ep.lookup)
    except FieldError as e:
        field = environment_field(source.environment) or "environment"
        raise ep.bad(str(e), field, frames=n) from None


def has_field(f: h5py.File, root: h5py.Group, key: str) -> bool:
    """Whether `Episode.lookup(key)` finds something in this episode (checked at listing)."""
    return key in root.attrs or key.lstrip("/") in root or key in f.attrs


def episode_tasks(ep: Episode, source: RobotSource, n: int) -> list[str | None]:
    """The task of every step, from `keys.instruction` (sources/per_step.py), else the sources file's
    `task:`; an episode that nothing gives a task is quarantined."""
    key = source.keys.instruction if isinstance(source.keys.instruction, str) else None
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
            missing = f"{ep.lacks(key)} (keys.instruction)"
        else:
            missing = f"the {what} is empty"
        raise ep.bad(no_task(missing), key, frames=n)
    return tasks


def camera_dataset(ep: Episode, node: object, native: str, where: str, n: int) -> h5py.Dataset:
    """The camera's dataset, with a frame per step and a declared size under the caps."""
    if not isinstance(node, h5py.Dataset):
        raise ep.bad(f"camera {native} is a group, not a dataset of frames", where, frames=n)
    if node.shape[:1] != (n,):
        frames = node.shape[0] if node.shape else 0
        raise ep.bad(f"camera {native} has {frames} frames, the episode has {n}", where, frames=n)
    too_big = declared_size_problem(node.shape, node.dtype.itemsize, image=True)
    if too_big:
        raise ep.bad(f"camera {native} {too_big}", where, frames=n)
    return node


def episode_digest(
    ep: Episode, state: np.ndarray, action: np.ndarray, cameras: list[h5py.Dataset], n: int
) -> str:
    """The content hash of the episode: its state, action and every camera's stored frames."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(state.tobytes())
    digest.update(action.tobytes())
    for ds in cameras:
        for block in _blocks(ep, ds, n):  # a few frames at a time: raw video is large
            if block.dtype != object:
                digest.update(np.ascontiguousarray(block).tobytes())
                continue
            for value in block:  # variable-length frames: their bytes, not the array's pointers
                data = frame_bytes(value) or b""
                digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def _blocks(ep: Episode, ds: h5py.Dataset, n: int) -> Iterator[np.ndarray]:
    """The frames of a camera dataset, a block of at most HASH_BLOCK_BYTES (or VLEN_BLOCK_FRAMES frames)
    at a time. A chunk that does not read (corrupted bytes inside its compressed data) is quarantined with
    its frame."""
    if ds.dtype == object:
        step = VLEN_BLOCK_FRAMES
    else:
        per_frame = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize)
        step = max(1, HASH_BLOCK_BYTES // per_frame)
    for start in range(0, n, step):
        try:
            block = ds[start : start + step]
        except OSError:
            for i in range(start, min(n, start + step)):
                read_frame(ep, ds, i)  # names the first frame that does not read
            raise
        yield block


def read_frame(ep: Episode, ds: h5py.Dataset, i: int) -> np.ndarray:
    try:
        return ds[i]
    except OSError as e:
        raise ep.bad(
            f"frame {i} of {ds.name} does not read: {one_line(e)} (a corrupted chunk? re-export or re-copy the file)",
            ds.name,
            i,
            ds.shape[0],
        ) from e


def frame_bytes(value: object) -> bytes | None:
    """The encoded image of one stored frame: bytes (vlen bytes, fixed-length S), an opaque (V) value, or a
    uint8 array (a zero-padded row, a vlen uint8 array); None for anything else."""
    if isinstance(value, bytes):  # np.bytes_ too
        return bytes(value)
    if isinstance(value, np.void):
        return value.tobytes()
    if isinstance(value, np.ndarray) and value.dtype == np.uint8:
        return value.tobytes()
    return None


def decode_frame(
    ep: Episode, ds: h5py.Dataset, i: int, encoded: bool, slot: str, box: int | None, what: str = "image"
) -> CameraImage:
    """Frame i of a camera: raw (H, W, 3) uint8 as stored, or its encoded bytes decoded (`Shrunk` for a
    box x box square with `box`). `what` names the encoding in a reason (ALOHA's are JPEG)."""
    raw = read_frame(ep, ds, i)
    if not encoded:
        if raw.ndim != 3 or raw.shape[2] != 3 or raw.dtype != np.uint8:
            raise ep.bad(
                f"image of shape {raw.shape} and type {raw.dtype}, expected (H, W, 3) uint8",
                f"image_{slot}",
                i,
                ds.shape[0],
            )
        return raw
    data = frame_bytes(raw)
    if data is None:
        kind = (
            f"{raw.dtype} values of shape {raw.shape}" if isinstance(raw, np.ndarray) else type(raw).__name__
        )
        raise ep.bad(
            f"frame {i} of {ds.name} holds {kind}, expected encoded image bytes (JPEG or PNG)",
            f"image_{slot}",
            i,
            ds.shape[0],
        )
    # Zero padding after the image's end marker is ignored by the decoder (as ALOHA's own loader relies
    # on), so a row's true length (ALOHA's /compress_len) is not needed.
    try:
        with stage("decode"):
            return decode_camera(data, box)
    except OSError as e:
        raise ep.bad(f"{what} does not decode: {one_line(e)}", f"image_{slot}", i, ds.shape[0]) from e
