"""Write LeRobot datasets (v2.1 and v3.0 layouts) with pyarrow and PyAV, without the lerobot package.

v2.1: one parquet and one mp4 per camera per episode, `meta/episodes.jsonl`, `meta/tasks.jsonl`,
`meta/episodes_stats.jsonl`. v3.0: episodes concatenated into `data/chunk-000/file-000.parquet` and one mp4
per camera, with each episode's `from_timestamp`/`to_timestamp` in `meta/episodes/`, tasks in
`meta/tasks.parquet`. Used for the bundled ME samples and the tests' fixtures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["LeRobotEpisode", "write_lerobot"]


@dataclass(frozen=True)
class LeRobotEpisode:
    state: np.ndarray  # (T, Ds)
    action: np.ndarray  # (T, Da)
    videos: dict[str, list[np.ndarray]]  # camera name (e.g. "top") -> T frames (H, W, 3) uint8
    task: str
    # more fields of the episode's row in meta/episodes (the ME samples' {"room": "kitchen"})
    fields: dict[str, str] = field(default_factory=dict)


def _encode(path: Path, frames: list[np.ndarray], fps: int, codec: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        container.metadata["encoder"] = "vlamix"
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # One thread: encoders may split work differently per run with more, and the bytes must not change.
        stream.options = (
            {"crf": "28", "preset": "8", "svtav1-params": "lp=1"}
            if codec == "libsvtav1"
            else {"crf": "23", "threads": "1"}
        )
        stream.codec_context.thread_count = 1
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _table(rows: dict) -> pa.Table:
    return pa.table(
        {
            "observation.state": pa.array(rows["state"].tolist(), pa.list_(pa.float32())),
            "action": pa.array(rows["action"].tolist(), pa.list_(pa.float32())),
            "timestamp": pa.array(rows["timestamp"], pa.float32()),
            "frame_index": pa.array(rows["frame_index"], pa.int64()),
            "episode_index": pa.array(rows["episode_index"], pa.int64()),
            "index": pa.array(rows["index"], pa.int64()),
            "task_index": pa.array(rows["task_index"], pa.int64()),
        }
    )


def _stats(x: np.ndarray) -> dict:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return {
        "min": x.min(0).tolist(),
        "max": x.max(0).tolist(),
        "mean": x.mean(0).tolist(),
        "std": x.std(0).tolist(),
        "count": [len(x)],
    }


def _info(
    version: str,
    episodes: list[LeRobotEpisode],
    fps: int,
    names: tuple[list[str], list[str]],
    codec: str,
    robot: str,
) -> dict:
    ep0 = episodes[0]
    features = {
        "action": {"dtype": "float32", "shape": [ep0.action.shape[1]], "names": names[1]},
        "observation.state": {"dtype": "float32", "shape": [ep0.state.shape[1]], "names": names[0]},
    }
    for cam, frames in ep0.videos.items():
        h, w = frames[0].shape[:2]
        features[f"observation.images.{cam}"] = {
            "dtype": "video",
            "shape": [h, w, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.fps": float(fps),
                "video.height": h,
                "video.width": w,
                "video.channels": 3,
                "video.codec": "av1" if codec == "libsvtav1" else "h264",
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "has_audio": False,
            },
        }
    for name, dtype in (
        ("timestamp", "float32"),
        ("frame_index", "int64"),
        ("episode_index", "int64"),
        ("index", "int64"),
        ("task_index", "int64"),
    ):
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    n_frames = sum(len(e.state) for e in episodes)
    info = {
        "codebase_version": version,
        "robot_type": robot,
        "total_episodes": len(episodes),
        "total_frames": n_frames,
        "total_tasks": len({e.task for e in episodes}),
        "chunks_size": 1000,
        "fps": fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "features": features,
    }
    if version == "v3.0":
        info |= {
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 500,
        }
    else:
        info |= {
            "total_chunks": 1,
            "total_videos": len(episodes) * len(ep0.videos),
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        }
    return info


def write_lerobot(
    root: Path,
    version: str,
    episodes: list[LeRobotEpisode],
    fps: int,
    names: tuple[list[str], list[str]],
    codec: str = "libsvtav1",
    robot: str = "sim_arm6",
) -> None:
    """Write `episodes` as a LeRobot dataset of `version` ("v2.1" or "v3.0") under `root`."""
    if version not in ("v2.1", "v3.0"):
        raise ValueError(f"version {version!r}: this writer knows v2.1 and v3.0")
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    tasks = list(dict.fromkeys(e.task for e in episodes))
    (meta / "info.json").write_text(
        json.dumps(_info(version, episodes, fps, names, codec, robot), indent=4) + "\n"
    )
    start = 0
    cols: dict[str, list] = {
        k: [] for k in ("state", "action", "timestamp", "frame_index", "episode_index", "index", "task_index")
    }
    ep_rows = []
    for i, ep in enumerate(episodes):
        n = len(ep.state)
        rows = {
            "state": ep.state.astype(np.float32),
            "action": ep.action.astype(np.float32),
            "timestamp": (np.arange(n) / fps).astype(np.float32),
            "frame_index": np.arange(n),
            "episode_index": np.full(n, i),
            "index": np.arange(start, start + n),
            "task_index": np.full(n, tasks.index(ep.task)),
        }
        if version == "v2.1":
            path = root / f"data/chunk-000/episode_{i:06d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(_table(rows), path)
            for cam, frames in ep.videos.items():
                _encode(
                    root / f"videos/chunk-000/observation.images.{cam}/episode_{i:06d}.mp4",
                    frames,
                    fps,
                    codec,
                )
        else:
            for k in cols:
                cols[k].append(rows[k])
        ep_rows.append(
            {
                "episode_index": i,
                "tasks": [ep.task],
                "length": n,
                "from": start,
                "t0": start / fps,
                "t1": (start + n) / fps,
                "fields": ep.fields,
            }
        )
        start += n
    if version == "v2.1":
        (meta / "episodes.jsonl").write_text(
            "".join(
                json.dumps(
                    {
                        "episode_index": r["episode_index"],
                        "tasks": r["tasks"],
                        "length": r["length"],
                        **r["fields"],
                    }
                )
                + "\n"
                for r in ep_rows
            )
        )
        (meta / "tasks.jsonl").write_text(
            "".join(json.dumps({"task_index": k, "task": t}) + "\n" for k, t in enumerate(tasks))
        )
        stats = [
            {"episode_index": i, "stats": {"observation.state": _stats(e.state), "action": _stats(e.action)}}
            for i, e in enumerate(episodes)
        ]
        (meta / "episodes_stats.jsonl").write_text("".join(json.dumps(s) + "\n" for s in stats))
        return
    path = root / "data/chunk-000/file-000.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(_table({k: np.concatenate(v) for k, v in cols.items()}), path)
    cams = list(episodes[0].videos)
    for cam in cams:
        _encode(
            root / f"videos/observation.images.{cam}/chunk-000/file-000.mp4",
            [f for e in episodes for f in e.videos[cam]],
            fps,
            codec,
        )
    table = {
        "episode_index": [r["episode_index"] for r in ep_rows],
        "tasks": [r["tasks"] for r in ep_rows],
        "length": [r["length"] for r in ep_rows],
        "data/chunk_index": [0] * len(ep_rows),
        "data/file_index": [0] * len(ep_rows),
        "dataset_from_index": [r["from"] for r in ep_rows],
        "dataset_to_index": [r["from"] + r["length"] for r in ep_rows],
    }
    for name in dict.fromkeys(k for r in ep_rows for k in r["fields"]):
        table[name] = [r["fields"].get(name) for r in ep_rows]
    for cam in cams:
        key = f"videos/observation.images.{cam}"
        table |= {
            f"{key}/chunk_index": [0] * len(ep_rows),
            f"{key}/file_index": [0] * len(ep_rows),
            f"{key}/from_timestamp": [r["t0"] for r in ep_rows],
            f"{key}/to_timestamp": [r["t1"] for r in ep_rows],
        }
    (meta / "episodes/chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(table), meta / "episodes/chunk-000/file-000.parquet")
    pd.DataFrame({"task_index": range(len(tasks))}, index=pd.Index(tasks, name="task")).to_parquet(
        meta / "tasks.parquet"
    )
    all_state = np.concatenate([e.state for e in episodes])
    all_action = np.concatenate([e.action for e in episodes])
    (meta / "stats.json").write_text(
        json.dumps({"observation.state": _stats(all_state), "action": _stats(all_action)}, indent=2) + "\n"
    )
