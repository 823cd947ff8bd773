"""Reader for any HDF5 robot layout by key mapping (`format: hdf5`): RoboMIND-, robomimic- and AgiBot-style
files, where the sources file names the datasets.

Sources-file entry: `keys: {state: PATH | [PATHS], action: PATH | [PATHS], cameras: {PATH: slot},
instruction?: PATH_OR_ATTR, timestamp?: PATH}`, and `episodes: file` (one episode per file, the default) or
`episodes: group` with `episode_group: data` (robomimic's `data/demo_0, data/demo_1, ...`). A PATH is a
dataset inside the episode (the file's root, or the episode's group), with or without a leading `/`.

Rules (each refuses, never guesses; shared machinery in sources/hdf5_episode.py):
- Episodes: `episodes: file`: one per file, its id the number ending the file's stem (as aloha_hdf5).
  `episodes: group`: one per group directly under `episode_group` (datasets beside them are not episodes),
  in natural order, file by file; its id the number ending the group's name (`demo_7` -> 7) when every
  group of every file ends in one and no two are equal, else its position over all the files in natural
  order (several robomimic files, each with its own demo_0, number on across the files). A file that does
  not open, has no `episode_group` group, or holds no episode group there is one unit, quarantined with the
  reason, its id past the largest; the first file lacking the group is a configuration error (a wrong
  `episode_group:`). A group's frames and quarantine records name it `FILE#GROUP` (`demos.hdf5#demo_7`),
  so annotations can address it as `demo_7`.
- State and action: numeric datasets of (T, width) or (T,), several paths side by side in the order named;
  every one as long as the first state dataset, as wide in all as the spec says. Bools, strings, NaNs are
  refused.
- Cameras: the datasets `keys.cameras` maps to slots (null drops one; `{slot, channel_order: bgr}` flips
  BGR frames); without `keys.cameras`, the spec's camera names are taken as paths. Raw (T, H, W, 3) uint8
  frames, or encoded JPEG/PNG bytes: a zero-padded (T, L) uint8 row, or one variable-length uint8 array,
  bytes, S or V value per frame. Another dtype or shape quarantines the episode naming the path.
- Instruction: `keys.instruction` names an attribute of the episode's group, else a dataset in it, else an
  attribute of the file's root: one text, or one per step (sources/per_step.py). Without it, `task:`.
- Timestamps: `keys.timestamp` names a dataset of per-step times in seconds; their median period must match
  the spec's control rate (no dataset is guessed: without the key there is nothing to check).
- At listing, the first episode is opened: a path it lacks (state, action, camera, timestamp; the
  instruction when there is no `task:` to fall back on) is a configuration error naming the path and the
  closest dataset name; in a later episode the same is a quarantine naming the path.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterator

import h5py
import numpy as np

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import CAMERA_SLOTS, Embodiment
from vlamix.sources.config import RobotSource, SourcesFile, resolve_files
from vlamix.sources.environment import environment_field
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.frames import CameraPlan, EpisodeFacts, frame_row, one_line, plan_cameras, to_rgb
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

__all__ = ["SUFFIXES", "camera_encoding", "list_episodes", "read_episode"]

SUFFIXES = (".hdf5", ".h5")
_MAX_LISTED_NAMES = 2000  # dataset names gathered for a "did you mean" hint


def _path(key: str) -> str:
    """A dataset path relative to the episode's group (a leading '/' would name the file's root)."""
    return key.lstrip("/")


def _paths(value: object) -> list[str]:
    keys = [value] if isinstance(value, str) else list(value or [])  # type: ignore[call-overload]
    return [_path(k) for k in keys]


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_episodes(sources: SourcesFile, source: RobotSource) -> list[EpisodeRef]:
    """One ref per episode file, or per episode group of each file. Raises ConfigError when nothing can give
    the episodes a task, when the cameras map to no slot (or two to one), or when the first episode lacks a
    path the keys name (checked here, before any job starts)."""
    require_task(source)
    emb = sources.embodiment(source).as_logged()
    _camera_plan(source, emb)
    files = resolve_files(sources.root, source.path, SUFFIXES)
    if source.episodes == "group":
        refs = _group_refs(files, sources, source)
    else:
        ids = trailing_ids([p.stem for p in files])
        refs = [
            EpisodeRef(source.name, i, str(p), display(p, sources.root))
            for i, p in zip(ids, files, strict=True)
        ]
    first = next((r for r in refs if r.error is None), None)
    if first is not None:
        _check_first(first, source, emb)
    return refs


def _camera_plan(source: RobotSource, emb: Embodiment) -> CameraPlan:
    natives = list(source.keys.cameras) or list(emb.cameras)
    plan, problem = plan_cameras(natives, source, emb)
    if problem:
        raise ConfigError(f"format hdf5 cameras: {problem}")
    if not plan.slots:
        raise ConfigError(
            f"no camera dataset maps to a slot (keys.cameras: {dict(source.keys.cameras)}; spec {emb.name} "
            f"cameras: {dict(emb.cameras)}): map each camera's dataset path to a slot in the sources file's "
            "`keys: {cameras: {PATH: slot}}`"
        )
    return plan


def _members(path: Location, group: str) -> tuple[list[str], str | None, bool]:
    """The episode groups under `group` of one file, in natural order, or the reason there are none; and
    whether the file opened."""
    try:
        with hdf5_file(path) as f:
            holder = f.get(group)
            if not isinstance(holder, h5py.Group):
                found = sorted(f.keys())[:10]
                return (
                    [],
                    (
                        f"no group {group!r} holding the episodes (the file's root holds {found}): set "
                        "`episode_group:` to the group whose sub-groups are the episodes, or `episodes: file`"
                    ),
                    True,
                )
            keys = holder.keys()  # (typed as names; iterating the group is not)
            names: list[str] = [k for k in keys if holder.get(k, getclass=True) is h5py.Group]
    except OSError as e:
        return [], f"cannot open as HDF5: {one_line(e)}", False
    if not names:
        return [], f"group {group!r} holds no episode group (robomimic's demo_0, demo_1, ...)", True
    return [f"{group.strip('/')}/{name}" for name in sorted(names, key=_natural)], None, True


def _group_refs(files: list[Location], sources: SourcesFile, source: RobotSource) -> list[EpisodeRef]:
    listed = []
    for p in files:
        rel = display(p, sources.root)
        members, error, opened = _members(p, _path(source.episode_group))
        if error is not None and opened and not listed:  # the first file: a configuration mistake
            raise ConfigError(f"{rel} (the first file, opened at listing): {error}")
        listed.append((p, rel, members, error))
    ids = iter(trailing_ids([m.rsplit("/", 1)[1] for _, _, members, _ in listed for m in members]))
    refs: list[EpisodeRef] = []
    for p, rel, members, error in listed:
        for member in members:
            name = member.rsplit("/", 1)[1]
            refs.append(EpisodeRef(source.name, next(ids), str(p), f"{rel}#{name}", member=member))
        if error is not None:
            refs.append(EpisodeRef(source.name, -1, str(p), rel, error=error))
    past = max((r.index for r in refs), default=-1) + 1
    out = []
    for ref in refs:  # a file that lists no episode: an id past the largest, quarantined when read
        if ref.error is not None:
            ref = EpisodeRef(ref.dataset, past, ref.path, ref.source_file, error=ref.error)
            past += 1
        out.append(ref)
    return out


def _dataset_names(root: h5py.Group) -> list[str]:
    names: list[str] = []

    def visit(name: str, obj: object) -> bool | None:
        if isinstance(obj, h5py.Dataset):
            names.append(name)
        return True if len(names) >= _MAX_LISTED_NAMES else None

    root.visititems(visit)
    return names


def _check_first(ref: EpisodeRef, source: RobotSource, emb: Embodiment) -> None:
    """ConfigError for a path the first episode lacks: a mistyped key would quarantine every episode."""
    try:
        opened = contextlib.ExitStack()
        f = opened.enter_context(hdf5_file(ref.path))
    except OSError:
        return  # a file that does not open is quarantined when read, with its reason
    with opened:
        root = f if ref.member is None else f.get(ref.member)
        if not isinstance(root, h5py.Group):
            return  # quarantined when read
        wanted = [(p, "state") for p in _paths(source.keys.state)]
        wanted += [(p, "action") for p in _paths(source.keys.action)]
        wanted += [(p, "cameras") for p in _paths(list(_camera_plan(source, emb).slots.values()))]
        wanted += [(p, "timestamp") for p in _paths(source.keys.timestamp)]
        missing = [(p, what) for p, what in wanted if not isinstance(root.get(p), h5py.Dataset)]
        key = source.keys.instruction
        found = isinstance(key, str) and (key in root.attrs or key in f.attrs or _path(key) in root)
        if isinstance(key, str) and not found and not source.task:
            missing.append((_path(key), "instruction"))
        field = environment_field(source.environment)
        if field is not None and not has_field(f, root, field):
            missing.append((field, "environment"))
        if not missing:
            return
        path, what = missing[0]
        close = difflib.get_close_matches(path, _dataset_names(root), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        kind = "attribute or dataset" if what in ("instruction", "environment") else "dataset"
        setting = "environment: {field: ...}" if what == "environment" else f"keys.{what}"
        fix = (
            "`environment:` in the sources file"
            if what == "environment"
            else "the path in the sources file's `keys:`"
        )
        raise ConfigError(
            f"{ref.source_file} (the first episode, opened at listing): no {kind} {path!r} ({setting}){hint}; "
            f"fix {fix}"
        )


def camera_encoding(ds: h5py.Dataset) -> str | None:
    """ "raw" for (T, H, W, 3) uint8 frames, "encoded" for image bytes per frame (a zero-padded (T, L) uint8
    row, or one variable-length uint8 array, bytes, S or V value per frame), None for anything else."""
    if ds.ndim == 4 and ds.dtype == np.uint8 and ds.shape[3] == 3:
        return "raw"
    if ds.ndim == 2 and ds.dtype == np.uint8:
        return "encoded"
    if ds.ndim != 1:
        return None
    if ds.dtype.kind in "SV":
        return "encoded"
    vlen = h5py.check_vlen_dtype(ds.dtype)
    if vlen is bytes or (isinstance(vlen, np.dtype) and vlen == np.uint8):
        return "encoded"
    return None


def read_episode(
    ref: EpisodeRef, source: RobotSource, emb: Embodiment, *, box: int | None = None
) -> Iterator[dict]:
    """Yield one frame record (a dict matching FRAME) per step of the episode. Raises BadRecord for an
    episode that cannot become frames: a file that does not open, a missing dataset, wrong widths or types,
    NaNs, sizes above the caps, corrupted chunks, images that do not decode, a rate that is not the spec's,
    an instruction or success value that is not one. With `box`, JPEG frames decode `Shrunk`."""
    with open_episode(ref) as f:
        root = f if ref.member is None else f.get(ref.member)
        ep = Episode(f, ref, root if isinstance(root, h5py.Group) else None)
        if not isinstance(root, h5py.Group):
            raise ep.bad(f"no episode group {ref.member} (the file changed since listing?)", ref.member)
        state, action = state_and_action(ep, emb, _paths(source.keys.state), _paths(source.keys.action))
        n = len(state)
        if source.keys.timestamp:
            check_rate(ep, emb, n, _path(source.keys.timestamp))
        cameras = _cameras(ep, source, emb, n)
        digest = episode_digest(ep, state, action, [ds for _, ds, _, _ in cameras], n)
        facts = EpisodeFacts(
            ref, source, emb, n, digest, episode_success(ep, source, n), episode_environment(ep, source, n)
        )
        tasks = episode_tasks(ep, source, n)
        for i in range(n):
            images = {
                slot: to_rgb(decode_frame(ep, ds, i, encoded, slot, box), order)
                for slot, ds, order, encoded in cameras
            }
            yield frame_row(facts, i, state[i], action[i], i / emb.control_rate_hz, tasks[i], images)


def _cameras(
    ep: Episode, source: RobotSource, emb: Embodiment, n: int
) -> list[tuple[str, h5py.Dataset, str, bool]]:
    """(slot, dataset, channel order, encoded) per mapped camera, in slot order; a missing camera dataset,
    or one that holds neither frames nor image bytes, quarantines the episode naming its path."""
    plan = _camera_plan(source, emb)
    out = []
    for slot in (s for s in CAMERA_SLOTS if s in plan.slots):
        path = _path(plan.slots[slot])
        node = ep.root.get(path)
        if node is None:
            raise ep.bad(
                f"no dataset {path}: the camera for slot {slot} is missing (check `keys: {{cameras: ...}}`)",
                path,
                frames=n,
            )
        ds = camera_dataset(ep, node, path, path, n)
        encoding = camera_encoding(ds)
        if encoding is None:
            raise ep.bad(
                f"camera {path} holds {ds.dtype} values of shape {ds.shape}: expected raw (frames, H, W, 3) "
                "uint8 frames or encoded JPEG/PNG bytes per frame ((frames, bytes) uint8, variable-length "
                "uint8 or bytes)",
                path,
                frames=n,
            )
        out.append((slot, ds, plan.orders[slot], encoding == "encoded"))
    return out
