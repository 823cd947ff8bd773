"""Write one file group of a LeRobot v3.0 export: the data parquet, one mp4 per camera and the group's
`meta/episodes/` parquet, each under a temporary name and renamed into place when whole.

Every frame record is checked before it is converted: state and action widths against the embodiment, each
camera present on every frame, each JPEG a frame of the video's size. The native state and action go in as
LeRobot writes them (fixed-size float32 lists); `timestamp` is `frame_index / fps` (float32), the time of
the frame in its video, which is what LeRobot seeks by.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlamix.exports.layout_source import ExportError, RobotData
from vlamix.exports.lerobot_language import EVENTS, PERSISTENT, language_array, language_of
from vlamix.exports.lerobot_plan import ExportPlan, Group
from vlamix.exports.lerobot_stats import image_counts, image_stats, vector_stats
from vlamix.exports.lerobot_video import CODECS, VideoWriter
from vlamix.schemas.frame import image_column
from vlamix.schemas.image_codec import decode_jpeg

__all__ = ["DATA_PATH", "EPISODES_PATH", "VIDEO_PATH", "write_group"]

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
PARTIAL = ".partial"


def _matrix(table: pa.Table, column: str, width: int, where: str) -> np.ndarray:
    col = table.column(column)
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(lengths != width)
    if len(bad):
        raise ExportError(
            f"{where}: frame {int(bad[0])} has {int(lengths[bad[0]])} {column} dims, the embodiment {width}"
        )
    return pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, width)


def _vector_type(width: int) -> pa.DataType:
    return pa.list_(pa.float32(), width)


def _stats_columns(feature: str, stats: dict[str, list]) -> dict[str, list]:
    return {f"stats/{feature}/{k}": v for k, v in stats.items()}


def write_group(data: RobotData, plan: ExportPlan, group: Group, root: Path) -> dict:
    """Write `group`'s files under `root`; returns its marker: the image pixel counts per camera (the
    dataset's image statistics add them up) and the frames written."""
    emb = data.embodiment
    ds, da = len(emb.state), len(emb.action)
    task_index = {t: i for i, t in enumerate(plan.tasks)}
    subtask_index = {t: i for i, t in enumerate(plan.subtasks)}
    videos: dict[str, VideoWriter] = {}
    totals = {key: np.zeros((3, 256), np.int64) for key, _ in plan.cameras}
    parts: list[pa.Table] = []
    rows: list[dict] = []
    in_file = 0
    for pos in range(group.first, group.first + group.count):
        ep = data.episodes[pos]
        where = data.store.url_of(ep.frames_path)
        table = data.frames(ep)
        n = table.num_rows
        state, action = _matrix(table, "state", ds, where), _matrix(table, "action", da, where)
        frame_index = np.arange(n, dtype=np.int64)
        cols: dict[str, pa.Array] = {
            "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(state.ravel()), ds),
            "action": pa.FixedSizeListArray.from_arrays(pa.array(action.ravel()), da),
            "timestamp": pa.array((frame_index / plan.fps).astype(np.float32)),
            "frame_index": pa.array(frame_index),
            "episode_index": pa.array(np.full(n, pos, np.int64)),
            "index": pa.array(np.arange(plan.starts[pos], plan.starts[pos] + n, dtype=np.int64)),
            "task_index": pa.array([task_index[t] for t in table.column("task").to_pylist()], pa.int64()),
        }
        if plan.language != "none":
            lang = language_of(
                n,
                data.spans["HL"].get(ep.episode, ()),
                data.spans["VI"].get(ep.episode, ()),
                table.column("subtask").to_pylist(),
                table.column("verbal_instruction").to_pylist(),
            )
            if plan.language == "columns":
                persistent = lang.persistent_rows(plan.fps)
                cols[PERSISTENT] = language_array([persistent] * n, PERSISTENT)
                cols[EVENTS] = language_array([lang.event_rows(f) for f in range(n)], EVENTS)
            else:
                cols["subtask_index"] = pa.array([subtask_index[t] for t in lang.subtask], pa.int64())
        row: dict = {
            "episode_index": pos,
            "tasks": list(dict.fromkeys(table.column("task").to_pylist())),
            "length": n,
            "data/chunk_index": group.chunk,
            "data/file_index": group.file,
            "dataset_from_index": plan.starts[pos],
            "dataset_to_index": plan.starts[pos] + n,
        }
        for key, slot in plan.cameras:
            jpegs = table.column(image_column(slot))
            if jpegs.null_count:
                frame = pc.index(pc.is_null(jpegs), True).as_py()
                raise ExportError(
                    f"{where}: camera {slot!r} has no image at frame {frame}; a video needs every frame"
                )
            counts = np.zeros((3, 256), np.int64)
            for f, jpeg in enumerate(jpegs.to_pylist()):
                img = decode_jpeg(jpeg)
                if key not in videos:
                    h, w = img.shape[:2]
                    path = root / (group.rel(VIDEO_PATH, video_key=key) + PARTIAL)
                    videos[key] = VideoWriter(path, plan.fps, plan.codec, h, w)
                if img.shape != videos[key].shape:
                    raise ExportError(
                        f"{where}: camera {slot!r} frame {f} is {img.shape}, the video {videos[key].shape}"
                    )
                videos[key].add(img)
                counts += image_counts([img])
            totals[key] += counts
            row |= {
                f"videos/{key}/chunk_index": group.chunk,
                f"videos/{key}/file_index": group.file,
                f"videos/{key}/from_timestamp": in_file / plan.fps,
                f"videos/{key}/to_timestamp": (in_file + n) / plan.fps,
            }
            row |= _stats_columns(key, image_stats(counts) | {"count": [n]})
        row |= {"meta/episodes/chunk_index": group.chunk, "meta/episodes/file_index": group.file}
        row |= _stats_columns("observation.state", vector_stats(state))
        row |= _stats_columns("action", vector_stats(action))
        # vlamix's own columns: where the episode came from, its split and success
        row |= {
            "split": ep.split,
            "success": table.column("success")[0].as_py(),
            "source_episode": ep.episode,
            "episode_hash": ep.episode_hash,
            "source_file": ep.source_file,
        }
        rows.append(row)
        parts.append(pa.table(cols))
        in_file += n
    _write_parquet(pa.concat_tables(parts), root / group.rel(DATA_PATH))
    for key, writer in videos.items():
        writer.close()
        os.replace(writer.path, root / group.rel(VIDEO_PATH, video_key=key))
    _write_parquet(pa.Table.from_pylist(rows), root / group.rel(EPISODES_PATH))
    return {
        "frames": in_file,
        "image_counts": {k: v.tolist() for k, v in totals.items()},
        "video_shapes": {k: list(w.shape) for k, w in videos.items()},
        "codec": CODECS[plan.codec].name,
    }


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + PARTIAL)
    pq.write_table(table, tmp)
    os.replace(tmp, path)
