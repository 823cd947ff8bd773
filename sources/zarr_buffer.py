"""Reader for diffusion-policy / UMI replay buffers in Zarr (`format: zarr`).

Layout: every step of every episode concatenated along the first axis of the arrays under `data/`
(`data/<key>`: (N,) or (N, width) numbers, (N, H, W, 3) uint8 camera frames, optionally (N,) texts), and
`meta/episode_ends`: the cumulative end step (exclusive) of each episode. Stores are found and opened by
sources/zarr_store.py (`.zarr` folders in zarr format 2 or 3, `.zarr.zip` files, local or at a URL).
Sources-file keys name arrays under `data/`: `keys: {state: KEY | [KEYS], action: KEY, cameras: {KEY:
slot}, instruction?: KEY}`.

Rules (each refuses, never guesses):
- Episodes: episode k of a store is the steps [episode_ends[k-1], episode_ends[k]) (from 0 for k = 0);
  only that slice is read. Its id is k plus the episodes of the stores before it (natural path order).
- Episode boundaries: meta/episode_ends must be 1-D integers, strictly increasing from above 0, and its
  last value must equal the length of every array under `data/`. Otherwise no boundary of the store can
  be trusted (a corrupted end moves the episodes after it onto other episodes' steps), so every episode
  the store declares (one per entry of episode_ends; the store as one unit when even their count does not
  read, or the store does not open) is quarantined with the reason, naming the index where the ends stop
  increasing or the array whose length differs, and counted with no frames. The other stores are read.
- Keys, shapes and cameras are checked on the first store that reads, at listing (a configuration error,
  before any job: a mistyped key is a sources-file problem); a later store that differs is quarantined.
  State and action: numeric arrays of (N,) or (N, width), the state's concatenated in order; their widths
  must be the embodiment's. A key the store lacks is named with the arrays it has.
- Cameras: every (N, H, W, 3) array is a camera; each must map to a slot (or to null) in the spec or in
  `keys: {cameras: ...}`, as sources/frames.py plans them; a camera the sources file names must exist;
  one at least must map. Frames must be uint8 (float images are refused, not rescaled). An array this
  install cannot decode (UMI's JPEG-XL) is refused naming it and its codec, unless it is mapped to null.
- Task: `keys.instruction` names a data array of texts (one per step); a step without text is under the
  instruction in force (sources/per_step.py). Without it, `task:` is every episode's (neither: a
  configuration error at listing).
- Rate: where the store has a `data/timestamp` array (seconds) its median period must match the spec's.
- Sizes: each slice and chunk is checked against the caps of sources/frames.py before it is read.
- Success: a constant, or a data array reduced over the episode's steps (sources/success.py).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import zarr

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import CAMERA_SLOTS, Embodiment
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.sources.config import RobotSource, SourcesFile
from vlamix.sources.environment import environment_of
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.fields import FieldError, numeric_matrix, per_step_text
from vlamix.sources.frames import (
    MAX_READ_BYTES,
    EpisodeFacts,
    declared_size_problem,
    frame_row,
    one_line,
    plan_cameras,
    to_rgb,
)
from vlamix.sources.location import Location, Unreachable, display
from vlamix.sources.per_step import bad_text_step, measured_rate_problem, no_task, tasks_in_force
from vlamix.sources.success import success_rule, success_value
from vlamix.sources.zarr_store import (
    DATA,
    ENDS,
    StoreError,
    data_arrays,
    find_stores,
    open_store,
    read_rows,
    survey,
)

__all__ = ["TIMESTAMP_KEYS", "list_episodes", "read_episode"]

TIMESTAMP_KEYS = ("timestamp", "timestamps")
_BLOCK_BYTES = 64 << 20  # camera bytes read at once
_READ_ERRORS = (OSError, RuntimeError, ValueError, TypeError, KeyError)  # codecs raise these on bad bytes


class _LayoutError(Exception):
    """A store whose arrays do not fit the sources file and the spec: (reason, the array it is about)."""

    def __init__(self, reason: str, field: str | None = None):
        super().__init__(reason)
        self.reason, self.field = reason, field


@dataclass(frozen=True)
class _Plan:
    """Which arrays a store's episodes are read from."""

    state: list[str]
    action: str
    cameras: list[tuple[str, str, str]]  # (slot, array, channel order), in slot order
    instruction: str | None
    timestamp: str | None


def _names(arrays: dict) -> str:
    return ", ".join(sorted(arrays)) or "none"


def _mapping(source: RobotSource, emb: Embodiment) -> dict[str, str | None]:
    out: dict[str, str | None] = dict(emb.cameras)
    for native, key in source.keys.cameras.items():
        out[native] = key if key is None or isinstance(key, str) else key.slot
    return out


def _array(arrays: dict, unopened: dict, key: str, what: str) -> zarr.Array:
    if key in unopened:
        raise _LayoutError(unopened[key], f"{DATA}/{key}")
    if key not in arrays:
        hint = (
            f" (keys name arrays under {DATA}/: {key[len(DATA) + 1 :]!r})"
            if key.startswith(f"{DATA}/")
            else ""
        )
        raise _LayoutError(
            f"no array {DATA}/{key}: the {what} is missing{hint}; the store has {_names(arrays)} "
            f"(set `keys: {{{what}: ...}}` in the sources file)",
            f"{DATA}/{key}",
        )
    return arrays[key]


def _numeric(arrays: dict, unopened: dict, keys: list[str], what: str, width: int, emb: Embodiment) -> None:
    total = 0
    for key in keys:
        a = _array(arrays, unopened, key, what)
        if a.ndim not in (1, 2) or a.dtype.kind not in "iuf":
            raise _LayoutError(
                f"{DATA}/{key} holds {a.dtype} values of shape {a.shape}: the {what} must be numbers of "
                "(steps, width) or (steps,)",
                f"{DATA}/{key}",
            )
        total += a.shape[1] if a.ndim == 2 else 1
    if total != width:
        raise _LayoutError(
            f"{what} has {total} columns ({' + '.join(keys)}), the embodiment spec {emb.name} says {width}",
            what,
        )


def _plan(arrays: dict, unopened: dict, source: RobotSource, emb: Embodiment) -> _Plan:
    """The arrays to read, or _LayoutError naming what does not fit (see the module doc)."""
    keys = source.keys
    state = [keys.state] if isinstance(keys.state, str) else list(keys.state or [])
    action = str(keys.action)
    _numeric(arrays, unopened, state, "state", emb.state_dim, emb)
    _numeric(arrays, unopened, [action], "action", emb.action_dim, emb)
    if keys.instruction:
        _array(arrays, unopened, str(keys.instruction), "instruction")
    mapping = _mapping(source, emb)
    for name, problem in unopened.items():
        if name in mapping and mapping[name] is None:
            continue  # dropped on purpose: never opened
        raise _LayoutError(
            f"{problem}; or, to leave it out, map it to null in `keys: {{cameras: {{{name}: null}}}}`",
            f"{DATA}/{name}",
        )
    for name, key in keys.cameras.items():
        slot = key if key is None or isinstance(key, str) else key.slot
        if slot is not None and name not in arrays:
            raise _LayoutError(
                f"`keys: {{cameras: ...}}` maps {name!r} to {slot}, but the store has no array {DATA}/{name} "
                f"(it has {_names(arrays)})",
                f"{DATA}/{name}",
            )
    natives = [
        n for n, a in arrays.items() if (a.ndim == 4 and a.shape[-1] == 3) or mapping.get(n) is not None
    ]
    camera_plan, problem = plan_cameras(natives, source, emb)
    if problem:
        raise _LayoutError(problem, DATA)
    if not camera_plan.slots:
        raise _LayoutError(
            f"no array under {DATA}/ is a camera that maps to a slot (the store has {_names(arrays)}; spec "
            f"{emb.name} and the sources file map {sorted(mapping)})",
            DATA,
        )
    cameras = []
    for slot in (s for s in CAMERA_SLOTS if s in camera_plan.slots):
        name = camera_plan.slots[slot]
        a = arrays[name]
        if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
            raise _LayoutError(
                f"camera {DATA}/{name} holds {a.dtype} values of shape {a.shape}, expected (steps, H, W, 3) "
                "uint8 frames (re-write them as uint8 RGB)",
                f"{DATA}/{name}",
            )
        cameras.append((slot, name, camera_plan.orders[slot]))
    timestamp = next((k for k in TIMESTAMP_KEYS if k in arrays), None)
    return _Plan(state, action, cameras, keys.instruction, timestamp)  # type: ignore[arg-type]


def list_episodes(sources: SourcesFile, source: RobotSource) -> list[EpisodeRef]:
    """One ref per entry of each store's meta/episode_ends (its start step in `offset`, its position in
    `record`, its steps in `frames`); a store whose boundaries cannot be trusted gives refs carrying the
    reason. Raises ConfigError when nothing gives the episodes a task, or when the first store that reads
    does not fit the sources file's keys and the spec."""
    if not source.keys.instruction and not source.task:
        raise ConfigError(
            f"no task for the episodes of {source.path!r}: the sources file sets neither `task:` nor "
            "`keys: {instruction: ...}`, so every episode would train on an empty prompt; set `task:` (the "
            "text every episode is trained with) or name the data array holding each step's instruction "
            "in `keys: {instruction: ...}`"
        )
    emb = sources.embodiment(source).as_logged()
    refs: list[EpisodeRef] = []
    checked = False
    for p in find_stores(sources.root, source.path):
        rel = display(p, sources.root)
        found, arrays, unopened = survey(p)
        if found.ends is None:
            refs.append(EpisodeRef(source.name, len(refs), str(p), rel, error=found.problem))
            continue
        if found.problem is None and not checked:
            try:
                _plan(arrays, unopened, source, emb)
            except _LayoutError as e:
                raise ConfigError(f"{rel} (the first store, opened at listing): {e.reason}") from None
            checked = True
        starts = np.concatenate([[0], found.ends[:-1]])
        for k, (start, end) in enumerate(zip(starts, found.ends, strict=True)):
            frames = 0 if found.problem else int(end - start)
            refs.append(
                EpisodeRef(
                    source.name,
                    len(refs),
                    str(p),
                    rel,
                    frames,
                    record=k,
                    offset=int(start),
                    error=found.problem,
                )
            )
    return refs


class _Episode:
    """One episode's slice of an open store + the checks that turn a malformed one into a quarantine."""

    def __init__(self, ref: EpisodeRef, where: Location, arrays: dict[str, zarr.Array]):
        self.ref, self.where, self.arrays = ref, where, arrays
        self.start, self.n = ref.offset, ref.frames

    def bad(self, reason: str, field: str | None = None, frame: int | None = None) -> BadRecord:
        r = self.ref
        return BadRecord(
            QuarantineRecord(
                r.dataset,
                r.source_file,
                f"episode {r.record} of the store: {reason}",
                r.index,
                None,
                frame,
                field,
                self.n,
            )
        )

    def check(self, key: str, image: bool = False) -> zarr.Array:
        """The array, after its length and declared sizes (the slice, a chunk) are checked."""
        a, field = self.arrays[key], f"{DATA}/{key}"
        stop = self.start + self.n
        if a.shape[0] < stop:
            raise self.bad(
                f"{field} holds {a.shape[0]} steps, the episode ends at step {stop} (as {ENDS} said at "
                "listing): the store changed since; list it again",
                field,
            )
        problem = declared_size_problem((self.n, *a.shape[1:]), a.dtype.itemsize, image)
        chunk = int(np.prod(a.chunks, dtype=np.int64)) * a.dtype.itemsize
        if problem is None and chunk > MAX_READ_BYTES:
            problem = (
                f"declares chunks of {chunk:,} bytes, above the cap of {MAX_READ_BYTES:,} (sources/frames.py)"
            )
        if problem:
            raise self.bad(f"{field} {problem}", field)
        return a

    def rows(self, key: str, start: int = 0, stop: int | None = None, image: bool = False) -> np.ndarray:
        """Steps [start, stop) of the episode (all of them by default) of `data/key`."""
        a = self.check(key, image)
        stop = self.n if stop is None else stop
        try:
            return read_rows(a, self.start + start, self.start + stop, self.where)
        except _READ_ERRORS as e:
            if image and stop - start > 1:
                for i in range(start, stop):
                    self.rows(key, i, i + 1, image)  # names the first frame that does not read
            what = f"frame {start} of {DATA}/{key}" if image else f"{DATA}/{key}"
            fix = "" if isinstance(e, Unreachable) else " (a corrupted chunk? re-export or re-copy the store)"
            raise self.bad(
                f"{what} does not read: {one_line(e)}{fix}",
                f"{DATA}/{key}",
                start if image else None,
            ) from e

    def numeric(self, keys: list[str], what: str) -> np.ndarray:
        parts = []
        for key in keys:
            try:
                parts.append(numeric_matrix(self.rows(key), self.n, f"{DATA}/{key}"))
            except FieldError as e:
                raise self.bad(f"{e}: the {what} must be numbers", f"{DATA}/{key}") from None
        data = np.concatenate(parts, axis=1)
        bad_rows = np.flatnonzero(~np.isfinite(data).all(axis=1))
        if len(bad_rows):
            raise self.bad(f"non-finite value (NaN or inf) in {what}", what, int(bad_rows[0]))
        return data

    def frames(self, key: str) -> Iterator[np.ndarray]:
        """The episode's frames of a camera, a block of at most _BLOCK_BYTES read at a time."""
        a = self.arrays[key]
        step = max(1, _BLOCK_BYTES // max(1, int(np.prod(a.shape[1:])) * a.dtype.itemsize))
        for start in range(0, self.n, step):
            yield from self.rows(key, start, min(self.n, start + step), image=True)


def read_episode(
    ref: EpisodeRef, source: RobotSource, emb: Embodiment, *, box: int | None = None
) -> Iterator[dict]:
    """Yield one frame record (a dict matching FRAME) per step of the episode's slice of its store.
    Raises BadRecord for an episode that cannot become frames: its store's boundaries (the ref's error),
    a store that does not open, arrays that do not fit the keys and the spec, sizes above the caps,
    chunks that do not decode, NaNs, a rate that is not the spec's, no task. Camera frames are raw, so
    `box` changes nothing."""
    if ref.error:
        raise BadRecord(
            QuarantineRecord(ref.dataset, ref.source_file, ref.error, ref.index, frames=ref.frames)
        )
    opened = contextlib.ExitStack()
    try:
        group, where = opened.enter_context(open_store(ref.path))
        arrays, unopened = data_arrays(group, where)
    except StoreError as e:
        opened.close()
        raise BadRecord(
            QuarantineRecord(ref.dataset, ref.source_file, str(e), ref.index, frames=ref.frames)
        ) from e
    with opened:
        ep = _Episode(ref, where, arrays)
        try:
            plan = _plan(arrays, unopened, source, emb)
        except _LayoutError as e:
            raise ep.bad(e.reason, e.field) from None
        state = ep.numeric(plan.state, "state")
        action = ep.numeric([plan.action], "action")
        if plan.timestamp is not None:
            _check_rate(ep, emb, plan.timestamp)
        digest = hashlib.blake2b(digest_size=16)
        digest.update(state.tobytes())
        digest.update(action.tobytes())
        for _, key, _ in plan.cameras:
            for frame in ep.frames(key):
                digest.update(np.ascontiguousarray(frame).tobytes())
        try:  # a constant or a path pattern: a replay buffer has no per-episode field (refused at load)
            environment = environment_of(source.environment, ref, None)
        except FieldError as e:
            raise ep.bad(str(e), "environment") from None
        facts = EpisodeFacts(ref, source, emb, ep.n, digest.hexdigest(), _success(ep, source), environment)
        tasks = _tasks(ep, source, plan.instruction)
        streams = [(slot, ep.frames(key), order) for slot, key, order in plan.cameras]
        for i in range(ep.n):
            images = {slot: to_rgb(next(frames), order) for slot, frames, order in streams}
            yield frame_row(facts, i, state[i], action[i], i / emb.control_rate_hz, tasks[i], images)


def _check_rate(ep: _Episode, emb: Embodiment, key: str) -> None:
    field = f"{DATA}/{key}"
    try:
        problem = measured_rate_problem(ep.rows(key), ep.n, emb, field)
    except FieldError as e:
        raise ep.bad(str(e), field) from None
    if problem:
        raise ep.bad(problem, field)


def _success(ep: _Episode, source: RobotSource) -> bool | None:
    try:
        return success_value(source.success, lambda key: ep.rows(key) if key in ep.arrays else None)
    except FieldError as e:
        rule = success_rule(source.success)
        raise ep.bad(f"{e} (the sources file's `success:`)", rule.field if rule else None) from None


def _tasks(ep: _Episode, source: RobotSource, key: str | None) -> list[str | None]:
    value = ep.rows(key) if key else None
    what = f"instruction {DATA}/{key}"
    try:
        texts = per_step_text(value, ep.n, what)
    except FieldError as e:
        raise ep.bad(str(e), f"{DATA}/{key}", bad_text_step(value, ep.n, what)) from None
    tasks = tasks_in_force(texts, source.task)
    if tasks is None:
        missing = f"the {what} is empty" if key else "the sources file names no instruction"
        raise ep.bad(no_task(missing), f"{DATA}/{key}" if key else None)
    return tasks
