"""The dataset-level files of a LeRobot v3.0 export, written once every file group is: `meta/tasks.parquet`
(and `meta/subtasks.parquet`), `meta/stats.json` (exact, over every exported frame), `meta/modality.json`
with `--gr00t`, `meta/vlamix_export.json` (where it came from) and `meta/info.json`, last."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlamix.exports.gr00t_modality import gr00t_modality
from vlamix.exports.layout_source import RobotData
from vlamix.exports.lerobot_files import DATA_PATH, VIDEO_PATH
from vlamix.exports.lerobot_language import EVENTS, PERSISTENT
from vlamix.exports.lerobot_plan import CHUNKS_SIZE, ExportPlan
from vlamix.exports.lerobot_stats import dataset_vector_stats, image_stats
from vlamix.exports.lerobot_video import CODECS
from vlamix.schemas.frame import SPLITS

__all__ = ["INFO", "PROVENANCE", "SPEC", "write_meta"]

INFO = "meta/info.json"
PROVENANCE = "meta/vlamix_export.json"
SPEC = "meta/vlamix_embodiment.yaml"


def _exported_spec(data: RobotData) -> str:
    """The embodiment spec of the exported columns: the layout's spec, less its rotation groups. The frames
    (and so the export) hold each group in its trained representation (Euler xyz or rot6d, design §2),
    which is what the spec's dims name; `vlamix ingest` reads the export back with this file."""
    import yaml

    rel = data.entry["embodiment_spec"]
    doc = yaml.safe_load(data.store.read_text(rel))
    if isinstance(doc.get("rotation"), dict | list):
        del doc["rotation"]
    return yaml.safe_dump(doc, sort_keys=False)


def _json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(doc, indent=4) + "\n")
    tmp.replace(path)


def _columns(root: Path, plan: ExportPlan, column: str) -> Iterator[np.ndarray]:
    for g in plan.groups:
        col = pq.read_table(root / g.rel(DATA_PATH), columns=[column]).column(column)
        width = col.type.list_size
        yield pc.list_flatten(col).to_numpy(zero_copy_only=False).reshape(-1, width)


def _features(data: RobotData, plan: ExportPlan, shapes: dict[str, list[int]]) -> dict:
    emb = data.embodiment
    features: dict = {
        "observation.state": {
            "dtype": "float32",
            "shape": [len(emb.state)],
            "names": [d.name for d in emb.state],
        },
        "action": {"dtype": "float32", "shape": [len(emb.action)], "names": [d.name for d in emb.action]},
    }
    for key, _ in plan.cameras:
        h, w, c = shapes[key]
        features[key] = {
            "dtype": "video",
            "shape": [h, w, c],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": h,
                "video.width": w,
                "video.codec": CODECS[plan.codec].name,
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": plan.fps,
                "video.channels": c,
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
    if plan.language == "columns":
        for name in (PERSISTENT, EVENTS):
            features[name] = {"dtype": "language", "shape": [1], "names": None}
    elif plan.language == "subtask-index":
        features["subtask_index"] = {"dtype": "int64", "shape": [1], "names": None}
    return features


def _splits(data: RobotData) -> dict[str, str]:
    out, start = {}, 0
    for split in SPLITS:  # the plan orders episodes train, val, test: each split is one range
        n = sum(1 for e in data.episodes if e.split == split)
        if n:
            out[split] = f"{start}:{start + n}"
        start += n
    return out


def write_meta(data: RobotData, plan: ExportPlan, root: Path, markers: list[dict], provenance: dict) -> dict:
    """Write the dataset-level files under `root` (info.json last) and return info.json's content."""
    pd.DataFrame(
        {"task_index": range(len(plan.tasks))}, index=pd.Index(list(plan.tasks), name="task")
    ).to_parquet(root / "meta/tasks.parquet")
    if plan.language == "subtask-index":
        pd.DataFrame(
            {"subtask_index": range(len(plan.subtasks))}, index=pd.Index(list(plan.subtasks), name="subtask")
        ).to_parquet(root / "meta/subtasks.parquet")
    emb = data.embodiment
    stats = {
        "observation.state": dataset_vector_stats(
            lambda: _columns(root, plan, "observation.state"), len(emb.state)
        ),
        "action": dataset_vector_stats(lambda: _columns(root, plan, "action"), len(emb.action)),
    }
    shapes: dict[str, list[int]] = {}
    for key, _ in plan.cameras:
        counts = sum(np.asarray(m["image_counts"][key], np.int64) for m in markers)
        stats[key] = image_stats(np.asarray(counts)) | {"count": [plan.frames]}
        shapes[key] = markers[0]["video_shapes"][key]
    _json(root / "meta/stats.json", stats)
    if plan.gr00t:
        _json(root / "meta/modality.json", gr00t_modality(emb, [k for k, _ in plan.cameras]))
    (root / SPEC).write_text(_exported_spec(data))
    _json(root / PROVENANCE, provenance)
    info = {
        "codebase_version": "v3.0",
        "robot_type": emb.name,
        "total_episodes": len(data.episodes),
        "total_frames": plan.frames,
        "total_tasks": len(plan.tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": plan.fps,
        "splits": _splits(data),
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if plan.cameras else None,
        "features": _features(data, plan, shapes),
    }
    _json(root / INFO, info)
    return info
