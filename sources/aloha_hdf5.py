"""Reader for ALOHA and Mobile-ALOHA HDF5 episodes (one file per episode).

Layout: `/observations/qpos` (T, 14), `/observations/images/<camera>` either raw (T, H, W, 3) uint8 or,
when the root attribute `compress` is true, JPEG bytes (T, L) zero-padded with lengths in
`/compress_len` (cameras, T); `/action` (T, 14) and, on Mobile ALOHA, `/base_action` (T, 2).

Rules (each refuses, never guesses):
- Episode id: the number that ends the file name's stem after a `_`, `-`, `.` or space, or is the whole
  stem (`episode_0.hdf5, episode_2.hdf5, episode_3.hdf5` -> 0, 2, 3: a deleted demo shifts no other),
  when every file's stem ends in one and no two are equal; otherwise the file's position in natural order
  (sources/hdf5_episode.py, shared with format hdf5).
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
- Environment: a constant, a path pattern, or a root attribute (or dataset) holding one text
  (sources/environment.py); the first file must have the field (checked at listing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import h5py

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import CAMERA_SLOTS, Embodiment
from vlamix.sources.config import RobotSource, SourcesFile, resolve_files
from vlamix.sources.environment import environment_field
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.frames import EpisodeFacts, camera_slot, frame_row, plan_cameras, to_rgb
from vlamix.sources.hdf5_episode import (
    Episode,
    camera_dataset,
    check_rate,
    decode_frame,
    episode_digest,
    episode_environment,
    episode_success,
    episode_tasks,
    has_field,
    hdf5_file,
    open_episode,
    require_task,
    state_and_action,
    trailing_ids,
)
from vlamix.sources.location import Location, display

__all__ = ["TIMESTAMP_KEYS", "list_episodes", "read_episode"]

SUFFIXES = (".hdf5", ".h5")
STATE_KEY = "/observations/qpos"
ACTION_KEYS = ("/action", "/base_action")
IMAGES_GROUP = "/observations/images"
TIMESTAMP_KEYS = ("/observations/timestamps", "/observations/timestamp", "/timestamps", "/timestamp")


def list_episodes(sources: SourcesFile, source: RobotSource) -> list[EpisodeRef]:
    """One ref per file. Raises ConfigError when nothing can give the episodes a task, or when the first
    file's cameras do not map onto the spec's slots (checked here, before any job starts)."""
    require_task(source)
    files = resolve_files(sources.root, source.path, SUFFIXES)
    _check_first_file(
        files[0], display(files[0], sources.root), source, sources.embodiment(source).as_logged()
    )
    return [
        EpisodeRef(source.name, index, str(p), display(p, sources.root))
        for index, p in zip(trailing_ids([p.stem for p in files]), files, strict=True)
    ]


def _check_first_file(path: Location, rel: str, source: RobotSource, emb: Embodiment) -> None:
    """ConfigError when the first file's cameras do not map onto slots, or it lacks the environment field."""
    try:
        opened = contextlib.ExitStack()
        f = opened.enter_context(hdf5_file(path))
    except OSError:
        return  # a file that does not open is quarantined when read, with its reason
    with opened:
        group = f.get(IMAGES_GROUP)
        natives = sorted(group.keys()) if isinstance(group, h5py.Group) else []
        field = environment_field(source.environment)
        if field is not None and not has_field(f, f, field):
            raise ConfigError(
                f"{rel} (the first episode file, opened at listing): no attribute or dataset {field!r} "
                "(environment: {field: ...}); fix `environment:` in the sources file"
            )
    _, problem = plan_cameras(natives, source, emb)
    if problem:
        raise ConfigError(f"{rel} (the first episode file, opened at listing): {problem}")


def _as_list(value: str | list[str] | None) -> list[str] | None:
    return [value] if isinstance(value, str) else value


def _action_keys(f: h5py.File, source: RobotSource, emb: Embodiment) -> list[str]:
    keys = _as_list(source.keys.action)  # type: ignore[arg-type]
    if keys:
        return keys
    wants_base = any(d.kind == "base_velocity" for d in emb.action)
    return [k for k in ACTION_KEYS if k == "/action" or (wants_base and k in f)]


def read_episode(
    ref: EpisodeRef, source: RobotSource, emb: Embodiment, *, box: int | None = None
) -> Iterator[dict]:
    """Yield one frame record (a dict matching FRAME) per step of the episode file. Raises BadRecord
    for a file that cannot become frames: unreadable, missing datasets, wrong widths or types, NaNs, sizes
    above the caps (sources/frames.py), corrupted chunks, images that do not decode, a rate that is not
    the spec's, cameras that do not map, a success or instruction value that is not one. With `box`, JPEG
    frames decode `Shrunk`, no smaller than fitting them into a box x box square needs."""
    with open_episode(ref) as f:
        ep = Episode(f, ref)
        state_keys = _as_list(source.keys.state) or [STATE_KEY]  # type: ignore[arg-type]
        state, action = state_and_action(ep, emb, state_keys, _action_keys(f, source, emb))
        n = len(state)
        timestamps = next((k for k in TIMESTAMP_KEYS if k in f), None)
        if timestamps is not None:  # without timestamps there is nothing to measure
            check_rate(ep, emb, n, timestamps)
        cameras = _cameras(ep, source, emb, n)
        digest = episode_digest(ep, state, action, [ds for _, ds, _ in cameras], n)
        facts = EpisodeFacts(
            ref, source, emb, n, digest, episode_success(ep, source, n), episode_environment(ep, source, n)
        )
        tasks = episode_tasks(ep, source, n)
        compressed = bool(f.attrs.get("compress", False))
        for i in range(n):
            images = {
                slot: to_rgb(decode_frame(ep, ds, i, compressed, slot, box, "JPEG"), order)
                for slot, ds, order in cameras
            }
            yield frame_row(facts, i, state[i], action[i], i / emb.control_rate_hz, tasks[i], images)


def _cameras(
    ep: Episode, source: RobotSource, emb: Embodiment, n: int
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
        where = f"{IMAGES_GROUP}/{native}"
        ds = camera_dataset(ep, group[native], native, where, n)  # type: ignore[index]
        out.append((slot, ds, plan.orders[slot]))
    return out
