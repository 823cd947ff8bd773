"""Reader for LeRobot datasets, v2.0, v2.1 and v3.0, told apart by `meta/info.json`'s `codebase_version`.

v2.x: `data/chunk-XXX/episode_XXXXXX.parquet` and `videos/chunk-XXX/<video_key>/episode_XXXXXX.mp4` per
episode, episodes in `meta/episodes.jsonl`, tasks in `meta/tasks.jsonl`. v3.0: many episodes per
`data/chunk-XXX/file-XXX.parquet` and per `videos/<video_key>/chunk-XXX/file-XXX.mp4`, each episode's
files and `from_timestamp`/`to_timestamp` in `meta/episodes/`, tasks in `meta/tasks.parquet`. Videos
(AV1, h264, ...) are decoded with PyAV and each parquet row is matched to the frame whose time is
within a tolerance of its `timestamp`. Image features stored in the parquet (`dtype: image`) work too.

An episode is known by its own `episode_index` (EpisodeRef.index and .record, frame keys): a dataset
with a deleted demo (episodes 0, 2, 3) keeps those ids. The dataset is mapped onto the embodiment spec
once, in `list_episodes` (sources/lerobot_plan.py: dims by name, fps, cameras); a mismatch is a
ConfigError there, in the driver, before any worker reads. NVIDIA GR00T's `meta/modality.json`, where
present, is read there too (sources/lerobot_modality.py): `keys` may name its state/action parts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import Embodiment
from vlamix.schemas.image_codec import (
    MAX_IMAGE_PIXELS,
    CameraImage,
    Shrunk,
    check_pixels,
    decode_camera,
    fit_size,
    pixels_of,
)
from vlamix.sources.config import RobotSource, SourcesFile
from vlamix.sources.environment import environment_field, environment_of
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.fields import FieldError, numeric_matrix, per_step_text, text_list
from vlamix.sources.frames import RATE_TOLERANCE, EpisodeFacts, frame_row, one_line, to_rgb
from vlamix.sources.lerobot_meta import (
    INFO_PATH,
    VERSIONS,
    Episode,
    read_episodes_meta,
    read_parquet,
    read_tasks,
    tasks_file,
)
from vlamix.sources.lerobot_meta import read_info as _info  # the tests clear its cache by this name
from vlamix.sources.lerobot_meta import split_ranges as _split_ranges
from vlamix.sources.lerobot_plan import Columns, Plan, plan_dataset
from vlamix.sources.location import Location, display, is_file, is_remote, locate, readable
from vlamix.sources.success import success_rule, success_value
from vlamix.stage_clock import stage

__all__ = ["VERSIONS", "list_episodes", "read_episode"]

_Episode = Episode


def _root(sources: SourcesFile, source: RobotSource) -> Location:
    return locate(sources.root, source.path)


def list_episodes(sources: SourcesFile, source: RobotSource) -> list[EpisodeRef]:
    """One reference per episode, by its own episode_index; ConfigError when the dataset does not fit
    its embodiment spec (names, fps, cameras) or the sources file."""
    root = _root(sources, source)
    info = _info(str(root))
    splits = _split_ranges(info, root / INFO_PATH)
    episodes = read_episodes_meta(root, info)
    plan_dataset(root, info, episodes, source, sources.embodiment(source).as_logged())
    rel = display(root, sources.root)
    refs = []
    for ep in episodes:
        e = ep["episode_index"]
        split = next(
            (name for name, lo, hi in splits if lo <= e < hi and name in ("train", "val", "test")), None
        )
        refs.append(
            EpisodeRef(
                source.name, e, str(root), f"{rel}#episode_{e:06d}", ep["length"], record=e, split=split
            )
        )
    return refs


def _episode_rows(root: Location, info: dict, ep: Episode, meta: dict) -> pa.Table:
    e = ep.ref.record
    if info["codebase_version"] == "v3.0":
        path = root / info["data_path"].format(
            chunk_index=meta["data/chunk_index"], file_index=meta["data/file_index"]
        )
        table = read_parquet(path, root, ep, episode=e)
        if "episode_index" not in table.column_names:
            raise ep.bad(f"{path.relative_to(root)} has no column 'episode_index'", "episode_index")
        table = table.filter(pc.equal(table.column("episode_index"), e))
    else:
        chunk = e // info.get("chunks_size", 1000)
        path = root / info["data_path"].format(episode_chunk=chunk, episode_index=e)
        table = read_parquet(path, root, ep)
    for name in ("timestamp", "frame_index"):
        if name not in table.column_names:
            raise ep.bad(f"{path.relative_to(root)} has no column {name!r}", name)
    if table.num_rows == 0:
        raise ep.bad(f"{path.relative_to(root)} holds no rows for episode {e}", "episode_index")
    return table.sort_by("frame_index")


def _timestamps(table: pa.Table, fps: float, ep: Episode) -> np.ndarray:
    """The rows' times; their median step must be the declared fps's (a 15 Hz episode in a dataset
    that says 30 would make every chunk twice as long in time)."""
    values = _values(table.column("timestamp"))
    if not isinstance(values, np.ndarray) or values.dtype.kind not in "iuf" or values.ndim != 1:
        raise ep.bad(
            f"column 'timestamp' is {table.column('timestamp').type} (or holds nulls), not one number a row",
            "timestamp",
        )
    stamps = values.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(stamps))
    if len(bad):
        raise ep.bad("non-finite timestamp (NaN or inf)", "timestamp", int(bad[0]))
    if len(stamps) > 1:
        step = float(np.median(np.diff(stamps)))
        if not step > 0 or abs(1.0 / step - fps) > RATE_TOLERANCE * fps:
            measured = f"{1.0 / step:.4g} Hz" if step > 0 else "not increasing"
            raise ep.bad(
                f"timestamps step by {step * 1000:.2f} ms in the median ({measured}), {INFO_PATH} says fps "
                f"{fps:g} ({1000 / fps:.2f} ms): re-export the episode at the dataset's rate, or fix fps",
                "timestamp",
            )
    return stamps


def _values(column: pa.ChunkedArray) -> np.ndarray | list:
    """A column as a numpy array where Arrow holds it as one (numbers or bools, or lists of them of one
    length, no nulls): no Python objects per value. Anything else as Python values, for numeric_matrix
    to accept or refuse row by row."""
    arr = column.combine_chunks()
    t = arr.type
    plain = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
    if plain and arr.null_count == 0:
        return arr.to_numpy(zero_copy_only=False)
    listed = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    if listed and arr.null_count == 0 and len(arr):
        inner = t.value_type
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(arr)
        numeric = pa.types.is_integer(inner) or pa.types.is_floating(inner) or pa.types.is_boolean(inner)
        if numeric and flat.null_count == 0 and (lengths == lengths[0]).all():
            return flat.to_numpy(zero_copy_only=False).reshape(len(arr), int(lengths[0]))
    return arr.to_pylist()


def _odd_row(values: np.ndarray | list) -> int | None:
    """The first row whose kind or width differs from row 0's (a null, a shorter list)."""
    if isinstance(values, np.ndarray):
        return None
    kinds = [(type(v), len(v) if isinstance(v, list) else None) for v in values]
    return next((k for k, kind in enumerate(kinds) if kind != kinds[0]), None)


def _column(
    table: pa.Table,
    keys: str | list[str] | None,
    default: str,
    width: int,
    what: str,
    ep: Episode,
    columns: Columns | None = None,
) -> np.ndarray:
    """(rows, width) float32 of the state (or action) columns, concatenated, then put in the spec's dim
    order (`columns`, from the plan); numbers only (bools and texts refused), finite, of the spec's width."""
    names = [keys] if isinstance(keys, str) else (keys or [default])
    cuts = columns.cuts if columns is not None and columns.cuts else (None,) * len(names)
    parts, read = [], {}
    for name, cut in zip(names, cuts, strict=True):
        if name not in table.column_names:
            raise ep.bad(
                f"no column {name!r}: the {what} is missing (set `keys: {{{what}: ...}}` in the sources file)",
                name,
            )
        if name not in read:
            values = _values(table.column(name))
            try:
                read[name] = numeric_matrix(values, table.num_rows, f"column {name!r}")
            except FieldError as e:
                raise ep.bad(str(e), name, _odd_row(values)) from e
        if cut is not None and read[name].shape[1] != cut.width:
            raise ep.bad(
                f"column {name!r} holds {read[name].shape[1]} values a row, {INFO_PATH} says {cut.width} "
                f"(meta/modality.json's part {cut.part!r} is [{cut.start}, {cut.end}) of it): re-export it",
                name,
            )
        parts.append(read[name] if cut is None else read[name][:, cut.start : cut.end])
    out = np.concatenate(parts, axis=1)
    if out.shape[1] != width:
        shown = [cut.part if cut else name for name, cut in zip(names, cuts, strict=True)]
        raise ep.bad(
            f"{what} has {out.shape[1]} columns ({' + '.join(shown)}), the embodiment spec says {width}", what
        )
    if columns is not None:
        out = columns.to_spec(out)
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if len(bad):
        raise ep.bad(f"non-finite value (NaN or inf) in {what}", what, int(bad[0]))
    return out


def _decode_video(
    path: Path, start: float, end: float, ep: Episode, key: str, box: int | None
) -> list[tuple[float, CameraImage]]:
    """(time, frame) for every frame of `path` in [start, end); with `box`, each frame `Shrunk` to its
    fitted size by the video scaler (area averaging) while it converts to RGB."""
    out = []
    try:
        with readable(path) as where, av.open(where) as container:
            if not container.streams.video:
                raise ep.bad(
                    f"video {path.name} has no video stream (a corrupted index? re-encode or re-download it)",
                    key,
                )
            stream = container.streams.video[0]
            try:
                check_pixels(stream.codec_context.width, stream.codec_context.height, f"video {path.name}")
            except OSError as e:
                raise ep.bad(str(e), key) from e
            # the decoder's own cap too, should a frame claim more than the stream header did
            stream.codec_context.options = {"max_pixels": str(MAX_IMAGE_PIXELS)}
            if start > 0:
                container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base)
                if t >= end:
                    break
                if t >= start - 1e-6:
                    out.append((t - start, _rgb(frame, box)))
    except (av.error.FFmpegError, OSError) as e:
        raise ep.bad(
            f"video {path.name} does not decode: {one_line(e).replace(str(path), path.name)} (truncated or corrupted? re-encode it)",
            key,
        ) from e
    return out


def _rgb(frame: av.VideoFrame, box: int | None) -> CameraImage:
    if box is None:
        return frame.to_ndarray(format="rgb24")
    new_h, new_w = fit_size(frame.height, frame.width, box)
    with stage("resize"):  # the scaler converts to RGB and downscales in one pass
        small = frame.reformat(width=new_w, height=new_h, format="rgb24", interpolation="AREA")
        return Shrunk(small.to_ndarray(), frame.height, frame.width)


def _match(
    frames: list[tuple[float, CameraImage]], stamps: np.ndarray, tol: float, ep: Episode, key: str
) -> list[CameraImage]:
    times = np.asarray([t for t, _ in frames])
    out = []
    for i, ts in enumerate(stamps):
        j = int(np.argmin(np.abs(times - ts))) if len(times) else -1
        if j < 0 or abs(times[j] - ts) > tol:
            have = f"the video ends at {times[-1]:.3f} s" if len(times) else "the video has no frames"
            raise ep.bad(
                f"no video frame within {tol * 1000:.0f} ms of timestamp {ts:.3f} s ({have}): video shorter than its parquet?",
                key,
                i,
            )
        out.append(frames[j][1])
    return out


def _video_span(
    root: Location, info: dict, ep: Episode, meta: dict, key: str
) -> tuple[Location, float, float]:
    """The video file holding the episode's frames of camera `key`, and their time span in it."""
    if info["codebase_version"] == "v3.0":
        path = root / info["video_path"].format(
            video_key=key,
            chunk_index=meta[f"videos/{key}/chunk_index"],
            file_index=meta[f"videos/{key}/file_index"],
        )
        return path, float(meta[f"videos/{key}/from_timestamp"]), float(meta[f"videos/{key}/to_timestamp"])
    chunk = ep.ref.record // info.get("chunks_size", 1000)
    path = root / info["video_path"].format(episode_chunk=chunk, video_key=key, episode_index=ep.ref.record)
    return path, 0.0, float("inf")


def _cameras(
    root: Location,
    info: dict,
    ep: Episode,
    meta: dict,
    table: pa.Table,
    stamps: np.ndarray,
    plan: Plan,
    box: int | None,
) -> dict[str, list[CameraImage]]:
    """slot -> one RGB frame per row (BGR-logged cameras flipped); `Shrunk` with `box`."""
    tol = 1.0 / (4.0 * plan.fps)
    out: dict[str, list[np.ndarray]] = {}
    for slot, (key, order) in sorted(plan.cameras.items()):
        if info["features"][key]["dtype"] == "image":
            if key not in table.column_names:
                raise ep.bad(f"no column {key!r}: the camera's images are missing", key)
            images: list[CameraImage] = []
            for i, cell in enumerate(table.column(key).to_pylist()):
                try:
                    with stage("decode"):
                        images.append(decode_camera(cell["bytes"], box))
                except (OSError, TypeError) as e:
                    raise ep.bad(f"image does not decode: {one_line(e)}", key, i) from e
        else:
            path, start, end = _video_span(root, info, ep, meta, key)
            if not is_file(path):
                raise ep.bad(f"video file {path.relative_to(root)} is missing", key)
            with stage("decode"):
                decoded = _decode_video(path, start, end + tol, ep, key, box)
            images = _match(decoded, stamps, tol, ep, key)
        out[slot] = [to_rgb(image, order) for image in images]
    return out


def _instructions(
    root: Location,
    info: dict,
    table: pa.Table,
    meta: dict,
    source: RobotSource,
    ep: Episode,
    task_column: str | None = None,
) -> list[str | None]:
    """Each row's instruction: the task of the row's `task_column` (a modality.json annotation `keys:
    {instruction}` names), else `keys: {instruction: field}` (a per-frame column or an episode field),
    else the text of the row's task_index, else the episode's one task in its metadata. A row without
    one is quarantined unless the sources file gives `task:` (never an empty prompt)."""
    n, field = table.num_rows, source.keys.instruction
    try:
        if task_column:  # a meta/modality.json annotation: task indices, like task_index
            texts = _task_texts(root, info, table, ep, task_column)
            why = f"a null {task_column}, or an empty task in {tasks_file(info)}"
        elif field:
            value = table.column(field).to_pylist() if field in table.column_names else meta.get(field)
            texts, why = per_step_text(value, n, f"instruction field {field!r}"), f"{field!r} is empty"
        elif "task_index" in table.column_names:
            texts, why = (
                _task_texts(root, info, table, ep),
                f"a null task_index, or an empty task in {tasks_file(info)}",
            )
        else:
            listed = text_list(meta.get("tasks"), "the episode's `tasks`")
            texts = [listed[0] if len(listed) == 1 else None] * n
            why = f"no task_index column, and its metadata lists {len(listed)} tasks, not one"
    except FieldError as e:
        raise ep.bad(str(e), field or "task") from e
    missing = next((i for i, t in enumerate(texts) if t is None), None)
    if missing is not None and not source.task:
        raise ep.bad(
            f"frame {missing} has no instruction ({why}) and the sources file gives this dataset no `task:`: "
            "set `task:` (the prompt of every frame without one) or fix the dataset's tasks",
            "task",
            missing,
        )
    return texts


def _task_texts(
    root: Location, info: dict, table: pa.Table, ep: Episode, column: str = "task_index"
) -> list[str | None]:
    if column not in table.column_names:
        raise ep.bad(f"no column {column!r}: the rows' task indices are missing", column)
    tasks, file = read_tasks(root, info, ep), tasks_file(info)
    out = []
    for i, k in enumerate(table.column(column).to_pylist()):
        if k is None:
            out.append(None)
        elif k in tasks.problems:
            raise ep.bad(tasks.problems[k], "task", i)
        elif k not in tasks.texts:
            raise ep.bad(f"{column} {k} is not in {file}", column, i)
        else:
            out.append(tasks.texts[k])
    return out


def _field(meta: dict, table: pa.Table, name: str) -> object:
    """An episode field as it is (meta/episodes), else a per-frame column whole; None when neither."""
    if name in meta:
        return meta[name]
    return table.column(name).to_pylist() if name in table.column_names else None


def _success(source: RobotSource, meta: dict, table: pa.Table, ep: Episode) -> bool | None:
    """The sources file's `success:`, reduced over the episode: an episode field as it is, a per-frame
    column whole (LeRobot's `next.success` is true at the last frame only; the default rule is `last`)."""
    try:
        return success_value(source.success, lambda name: _field(meta, table, name))
    except FieldError as e:
        rule = success_rule(source.success)
        raise ep.bad(str(e), rule.field if rule else "success") from e


def _environment(source: RobotSource, meta: dict, table: pa.Table, tasks: list, ep: Episode) -> str | None:
    """The sources file's `environment:`: a field is a per-episode column of meta/episodes, a per-frame
    column with one value over the episode, or `task` (the episode's one task)."""

    def lookup(name: str) -> object:
        value = _field(meta, table, name)
        return tasks if value is None and name == "task" else value

    try:
        return environment_of(source.environment, ep.ref, lookup)
    except FieldError as e:
        raise ep.bad(str(e), environment_field(source.environment) or "environment") from e


def _meta_signature(root: Location) -> tuple:
    """What the metadata files are now (path, size, mtime): a changed file is read again. At a URL the
    dataset is taken as fixed for the run (a stat per file per episode would cost a request each)."""
    if is_remote(root):
        return (str(root),)
    files = [
        root / INFO_PATH,
        root / "meta/episodes.jsonl",
        *sorted((root / "meta/episodes").glob("*/*.parquet")),
    ]
    return tuple((str(f), st.st_size, st.st_mtime_ns) for f in files if f.is_file() for st in [f.stat()])


@lru_cache(maxsize=8)
def _episodes_by_index(root: str, signature: tuple) -> dict[int, dict]:
    """The episodes' metadata rows by episode_index, read once per worker process and dataset (v3.0
    keeps them in parquet files with per-episode statistics: re-reading them for every episode would be
    quadratic in the episodes); `signature` (_meta_signature) makes a changed file count."""
    return {m["episode_index"]: m for m in read_episodes_meta(locate("/", root), _info(root))}


def read_episode(
    ref: EpisodeRef, source: RobotSource, emb: Embodiment, *, box: int | None = None
) -> Iterator[dict]:
    """One frame record per parquet row of the episode; with `box`, camera frames decode `Shrunk` (no
    smaller than fitting them into a box x box square needs). Raises BadRecord for input to quarantine."""
    root = locate("/", ref.path)
    ep = Episode(ref)
    try:  # checked in list_episodes already: here only if the files changed since
        info = _info(str(root))
        by_index = _episodes_by_index(str(root), _meta_signature(root))
        plan = plan_dataset(root, info, list(by_index.values()), source, emb)
    except ConfigError as e:
        raise ep.bad(one_line(e)) from e
    meta = by_index.get(ref.record)
    if meta is None:
        raise ep.bad(
            f"episode_index {ref.record} is no longer in the dataset's episode list", "episode_index"
        )
    table = _episode_rows(root, info, ep, meta)
    if table.num_rows != ref.frames:
        raise ep.bad(
            f"the parquet holds {table.num_rows} rows, meta says the episode has {ref.frames}", "length"
        )
    stamps = _timestamps(table, plan.fps, ep)
    state = _column(table, list(plan.state.names), "", emb.state_dim, "state", ep, plan.state)
    action = _column(table, list(plan.action.names), "", emb.action_dim, "action", ep, plan.action)
    tasks = _instructions(root, info, table, meta, source, ep, plan.task_column)
    cameras = _cameras(root, info, ep, meta, table, stamps, plan, box)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(state.tobytes())
    digest.update(action.tobytes())
    for slot in sorted(cameras):  # a spread of 16 frames per camera is enough to tell episodes apart
        for image in cameras[slot][:: max(1, len(cameras[slot]) // 16)]:
            digest.update(pixels_of(image).tobytes())
    success, environment = _success(source, meta, table, ep), _environment(source, meta, table, tasks, ep)
    facts = EpisodeFacts(ref, source, emb, table.num_rows, digest.hexdigest(), success, environment)
    for i in range(table.num_rows):
        images = {slot: frames[i] for slot, frames in cameras.items()}
        yield frame_row(facts, i, state[i], action[i], float(stamps[i]), tasks[i], images)
