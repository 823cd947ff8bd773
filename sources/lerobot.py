"""Reader for LeRobot datasets, v2.0, v2.1 and v3.0, told apart by `meta/info.json`'s `codebase_version`.

v2.x: `data/chunk-XXX/episode_XXXXXX.parquet` and `videos/chunk-XXX/<video_key>/episode_XXXXXX.mp4` per
episode, episodes in `meta/episodes.jsonl`, tasks in `meta/tasks.jsonl`. v3.0: many episodes per
`data/chunk-XXX/file-XXX.parquet` and per `videos/<video_key>/chunk-XXX/file-XXX.mp4`, each episode's
files and `from_timestamp`/`to_timestamp` in `meta/episodes/`, tasks in `meta/tasks.parquet`. Videos
(AV1, h264, ...) are decoded with PyAV and each parquet row is matched to the frame whose time is
within a tolerance of its `timestamp`. Image features stored in the parquet (`dtype: image`) work too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import Embodiment
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.sources.config import RobotSource, SourcesFile
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.frames import EpisodeFacts, camera_slot, frame_row, one_line, parquet_size_problem
from vlamix.sources.success import success_value
from vlamix.transforms.image import MAX_IMAGE_PIXELS, check_pixels, decode_jpeg

__all__ = ["VERSIONS", "list_episodes", "read_episode"]

INFO_PATH = "meta/info.json"
VERSIONS = ("v2.0", "v2.1", "v3.0")
IMAGE_PREFIX = "observation.images."


@cache
def _info(root: str) -> dict:
    path = Path(root) / INFO_PATH
    if not path.is_file():
        raise ConfigError(f"{root}: no {INFO_PATH}; point `path` at a LeRobot dataset's root folder")
    try:
        info = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it: {e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 ({e}); re-write it as UTF-8 JSON") from e
    except (ValueError, RecursionError) as e:  # JSONDecodeError, an int of over 4300 digits, deep nesting
        raise ConfigError(f"{path}: not valid JSON ({str(e)[:200]}); re-export the dataset's metadata") from e
    if not isinstance(info, dict):
        raise ConfigError(
            f"{path}: holds a JSON {type(info).__name__}, not an object with `codebase_version`, "
            "`features`, ...; re-export the dataset's metadata"
        )
    version = info.get("codebase_version")
    if version not in VERSIONS:
        raise ConfigError(
            f"{path}: codebase_version {version!r} is not one this reader knows ({', '.join(VERSIONS)})"
        )
    return info


def _root(sources: SourcesFile, source: RobotSource) -> Path:
    p = Path(source.path)
    return p if p.is_absolute() else sources.root / p


def _episodes_meta(root: Path, info: dict) -> list[dict]:
    if info["codebase_version"] == "v3.0":
        files = sorted((root / "meta/episodes").glob("*/*.parquet"))
        rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    else:
        rows = [
            json.loads(line)
            for line in (root / "meta/episodes.jsonl").read_text().splitlines()
            if line.strip()
        ]
    return sorted(rows, key=lambda r: r["episode_index"])


_SPLIT = re.compile(r"(0|[1-9][0-9]{0,17}):(0|[1-9][0-9]{0,17})")  # no leading zeros: one way to write each


def _split_ranges(info: dict, path: str | Path = INFO_PATH) -> list[tuple[str, int, int]]:
    """(split, first episode, end episode) of info.json's `splits`, e.g. {"train": "0:40"}."""
    splits = info.get("splits") or {}
    if not isinstance(splits, dict):
        raise ConfigError(
            f"{path}: splits is {repr(splits)[:60]}, not a mapping of split name to `start:end` episodes"
        )
    out = []
    for name, spec in splits.items():
        m = _SPLIT.fullmatch(spec) if isinstance(spec, str) else None
        if m is None or int(m[1]) > int(m[2]):
            raise ConfigError(
                f"{path}: split {name!r} is {repr(spec)[:60]}, not `start:end` episode indices (plain "
                'integers, start <= end, e.g. "0:40"); fix `splits` in it'
            )
        out.append(({"validation": "val"}.get(name, name), int(m[1]), int(m[2])))
    return out


def list_episodes(sources: SourcesFile, source: RobotSource) -> list[EpisodeRef]:
    root = _root(sources, source)
    info = _info(str(root))
    splits = _split_ranges(info, root / INFO_PATH)
    refs = []
    rel = str(root.relative_to(sources.root)) if root.is_relative_to(sources.root) else str(root)
    for i, ep in enumerate(_episodes_meta(root, info)):
        e = int(ep["episode_index"])
        split = next(
            (name for name, lo, hi in splits if lo <= e < hi and name in ("train", "val", "test")), None
        )
        refs.append(
            EpisodeRef(
                source.name, i, str(root), f"{rel}#episode_{e:06d}", int(ep["length"]), record=e, split=split
            )
        )
    return refs


class _Episode:
    def __init__(self, ref: EpisodeRef):
        self.ref = ref

    def bad(self, reason: str, field: str | None = None, frame: int | None = None) -> BadRecord:
        r = self.ref
        return BadRecord(
            QuarantineRecord(r.dataset, r.source_file, reason, r.index, None, frame, field, r.frames)
        )


def _read_parquet(path: Path, root: Path, ep: _Episode, columns: list[str] | None = None) -> pa.Table:
    """A whole parquet file, its declared (uncompressed) size checked against the cap first."""
    rel = path.relative_to(root)
    if not path.is_file():
        raise ep.bad(f"{rel} is missing")
    try:
        pf = pq.ParquetFile(path)
        too_big = parquet_size_problem(pf.metadata)
        if too_big:
            raise ep.bad(f"{rel} {too_big}")
        return pf.read(columns=columns)
    except (pa.ArrowException, OSError) as e:  # thrift and page errors are OSErrors, bad magic ArrowInvalid
        raise ep.bad(
            f"{rel} does not read as parquet: {one_line(e)} (truncated or corrupted? re-download or re-export it)"
        ) from e


def _tasks(root: Path, info: dict, ep: _Episode) -> dict[int, str | None]:
    """task_index -> task text; None for a text that is not UTF-8 (an episode using it is quarantined)."""
    if info["codebase_version"] == "v3.0":
        t = _read_parquet(root / "meta/tasks.parquet", root, ep)
        names = [c for c in t.column_names if c != "task_index"]
        raw = t.column(names[0]).cast(pa.binary()).to_pylist()  # bytes: invalid UTF-8 must not raise here
        return {k: _utf8(b) for k, b in zip(t.column("task_index").to_pylist(), raw, strict=True)}
    path = root / "meta/tasks.jsonl"
    if not path.is_file():
        raise ep.bad("meta/tasks.jsonl is missing", "task_index")
    out: dict[int, str | None] = {}
    for n, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line.decode("utf-8", "surrogateescape"))
            out[int(d["task_index"])] = _utf8(d["task"].encode("utf-8", "surrogateescape"))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ep.bad(
                f"meta/tasks.jsonl line {n} is not a task line ({e}): fix or remove it", "task"
            ) from e
    return out


def _utf8(raw: bytes | None) -> str | None:
    try:
        return raw.decode("utf-8") if raw is not None else None
    except UnicodeDecodeError:
        return None


def _episode_rows(root: Path, info: dict, ep: _Episode, meta: dict):
    e = ep.ref.record
    if info["codebase_version"] == "v3.0":
        path = root / info["data_path"].format(
            chunk_index=meta["data/chunk_index"], file_index=meta["data/file_index"]
        )
        table = _read_parquet(path, root, ep)
        table = table.filter(pc.equal(table.column("episode_index"), e))
    else:
        chunk = e // info.get("chunks_size", 1000)
        path = root / info["data_path"].format(episode_chunk=chunk, episode_index=e)
        table = _read_parquet(path, root, ep)
    for name in ("timestamp", "frame_index"):
        if name not in table.column_names:
            raise ep.bad(f"{path.relative_to(root)} has no column {name!r}", name)
    if table.num_rows == 0:
        raise ep.bad(f"{path.relative_to(root)} holds no rows for episode {e}", "episode_index")
    return table.sort_by("frame_index"), path


def _decode_video(
    path: Path, start: float, end: float, ep: _Episode, key: str
) -> list[tuple[float, np.ndarray]]:
    """(time, frame) for every frame of `path` in [start, end)."""
    out = []
    try:
        with av.open(str(path)) as container:
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
                    out.append((t - start, frame.to_ndarray(format="rgb24")))
    except (av.error.FFmpegError, OSError) as e:
        raise ep.bad(
            f"video {path.name} does not decode: {one_line(e).replace(str(path), path.name)} (truncated or corrupted? re-encode it)",
            key,
        ) from e
    return out


def _match(
    frames: list[tuple[float, np.ndarray]], stamps: np.ndarray, tol: float, ep: _Episode, key: str
) -> list[np.ndarray]:
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


def _cameras(
    root: Path, info: dict, ep: _Episode, meta: dict, table, source: RobotSource, emb: Embodiment
) -> dict[str, list[np.ndarray]]:
    mapping = {**emb.cameras, **source.keys.cameras}
    stamps = np.asarray(table.column("timestamp").to_pylist(), np.float64)
    tol = 1.0 / (4.0 * float(info["fps"]))
    out: dict[str, list[np.ndarray]] = {}
    for key, feat in sorted(info["features"].items()):
        if feat.get("dtype") not in ("video", "image"):
            continue
        native = key.removeprefix(IMAGE_PREFIX)
        slot, problem = camera_slot(native, source, emb)
        if problem:
            raise ep.bad(problem, key)
        if slot is None or slot in out:
            continue
        if feat["dtype"] == "image":
            images = []
            for i, cell in enumerate(table.column(key).to_pylist()):
                try:
                    images.append(decode_jpeg(cell["bytes"]))
                except (OSError, TypeError) as e:
                    raise ep.bad(f"image does not decode: {one_line(e)}", key, i) from e
            out[slot] = images
            continue
        if info["codebase_version"] == "v3.0":
            path = root / info["video_path"].format(
                video_key=key,
                chunk_index=meta[f"videos/{key}/chunk_index"],
                file_index=meta[f"videos/{key}/file_index"],
            )
            start, end = (
                float(meta[f"videos/{key}/from_timestamp"]),
                float(meta[f"videos/{key}/to_timestamp"]),
            )
        else:
            chunk = ep.ref.record // info.get("chunks_size", 1000)
            path = root / info["video_path"].format(
                episode_chunk=chunk, video_key=key, episode_index=ep.ref.record
            )
            start, end = 0.0, float("inf")
        if not path.is_file():
            raise ep.bad(f"video file {path.relative_to(root)} is missing", key)
        out[slot] = _match(_decode_video(path, start, end + tol, ep, key), stamps, tol, ep, key)
    if not out:
        raise ep.bad(
            f"no camera maps to a slot (spec {emb.name} knows {sorted(mapping)})", "observation.images"
        )
    return out


def _column(
    table, keys: str | list[str] | None, default: str, width: int, what: str, ep: _Episode
) -> np.ndarray:
    names = [keys] if isinstance(keys, str) else (keys or [default])
    parts = []
    for name in names:
        if name not in table.column_names:
            raise ep.bad(
                f"no column {name!r}: the {what} is missing (set `keys: {{{what}: ...}}` in the sources file)",
                name,
            )
        parts.append(_numeric(table.column(name).to_pylist(), name, ep))
    out = np.concatenate(parts, axis=1)
    if out.shape[1] != width:
        raise ep.bad(
            f"{what} has {out.shape[1]} columns ({' + '.join(names)}), the embodiment spec says {width}", what
        )
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if len(bad):
        raise ep.bad(f"non-finite value (NaN or inf) in {what}", what, int(bad[0]))
    return out


def _numeric(values: list, name: str, ep: _Episode) -> np.ndarray:
    """(rows, width) float32 of a column of lists (or scalars); every row must hold as many values."""
    try:
        return np.asarray(values, dtype=np.float32).reshape(len(values), -1)
    except (ValueError, TypeError) as e:
        widths = [len(v) if isinstance(v, list) else (None if v is None else 1) for v in values]
        row = next((i for i, w in enumerate(widths) if w != widths[0] or w is None), 0)
        raise ep.bad(
            f"row {row} of {name!r} holds {'no value' if widths[row] is None else f'{widths[row]} values'}, "
            f"row 0 holds {widths[0]}: rows that disagree in width ({e})",
            name,
            row,
        ) from e


def read_episode(ref: EpisodeRef, source: RobotSource, emb: Embodiment) -> Iterator[dict]:
    root = Path(ref.path)
    info = _info(str(root))
    ep = _Episode(ref)
    meta = next(m for m in _episodes_meta(root, info) if int(m["episode_index"]) == ref.record)
    table, _ = _episode_rows(root, info, ep, meta)
    if table.num_rows != ref.frames:
        raise ep.bad(
            f"the parquet holds {table.num_rows} rows, meta says the episode has {ref.frames}", "length"
        )
    state = _column(table, source.keys.state, "observation.state", emb.state_dim, "state", ep)
    action = _column(table, source.keys.action, "action", emb.action_dim, "action", ep)
    tasks = _tasks(root, info, ep)
    task_ids = (
        table.column("task_index").to_pylist()
        if "task_index" in table.column_names
        else [None] * table.num_rows
    )
    _check_tasks(task_ids, tasks, info, ep)
    cameras = _cameras(root, info, ep, meta, table, source, emb)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(state.tobytes())
    digest.update(action.tobytes())
    for slot in sorted(cameras):  # a spread of 16 frames per camera is enough to tell episodes apart
        for image in cameras[slot][:: max(1, len(cameras[slot]) // 16)]:
            digest.update(image.tobytes())

    def lookup(k):
        return meta.get(k) if k in meta else (table.column(k)[0].as_py() if k in table.column_names else None)

    facts = EpisodeFacts(
        ref, source, emb, table.num_rows, digest.hexdigest(), success_value(source.success, lookup)
    )
    stamps = table.column("timestamp").to_pylist()
    for i in range(table.num_rows):
        task = tasks[task_ids[i]] if task_ids[i] is not None else None
        yield frame_row(
            facts,
            i,
            state[i],
            action[i],
            stamps[i],
            task,
            {slot: frames[i] for slot, frames in cameras.items()},
        )


def _check_tasks(task_ids: list, tasks: dict[int, str | None], info: dict, ep: _Episode) -> None:
    """Every row's task_index names a task whose text is UTF-8."""
    file = "meta/tasks.parquet" if info["codebase_version"] == "v3.0" else "meta/tasks.jsonl"
    for i, k in enumerate(task_ids):
        if k is None:
            continue
        if k not in tasks:
            raise ep.bad(f"task_index {k} is not in {file}", "task_index", i)
        if tasks[k] is None:
            raise ep.bad(
                f"the text of task_index {k} in {file} is not UTF-8: re-write the file as UTF-8", "task", i
            )
