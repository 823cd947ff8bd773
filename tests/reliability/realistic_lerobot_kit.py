"""Small LeRobot datasets shaped like real ones, for test_realistic_lerobot.py: written with the synthetic
writer (h264, 32x32 frames, 8 frames an episode), then edited the way real datasets differ (a deleted
demo, dims named in another order, a per-frame success flag, BGR-logged cameras, ...).

Each state and action value says where it belongs: `episode + 0.01 * frame + 0.1 * k` for the spec's
k-th dim, so a test can tell which episode, frame and dim a value came from."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from conftest import as_written

from vlamix.schemas.embodiment import Embodiment
from vlamix.sources.config import RobotSource, load_sources
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.lerobot import _info, list_episodes, read_episode
from vlamix.sources.synthetic.lerobot_writer import LeRobotEpisode, write_lerobot

__all__ = [
    "DIMS",
    "FRAMES",
    "SPEC",
    "data_file",
    "delete_episode",
    "dim_values",
    "edit_data",
    "edit_info",
    "open_dataset",
    "read_rows",
    "write_dataset",
]

SPEC = Path(__file__).resolve().parents[2] / "samples" / "embodiments" / "sim_arm6_30hz.yaml"
DIMS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper"]
FRAMES, FPS = 8, 30


def dim_values(episode: int, names: list[str], frames: int = FRAMES) -> np.ndarray:
    """(frames, len(names)): the value of each named dim, by the spec's dim order (see the module doc);
    a name the spec lacks counts as one past its last dim."""
    k = [DIMS.index(n) if n in DIMS else len(DIMS) for n in names]
    return np.asarray([[episode + 0.01 * t + 0.1 * j for j in k] for t in range(frames)], np.float32)


def write_dataset(
    root: Path,
    version: str = "v2.1",
    episodes: int = 3,
    names: list[str] = DIMS,
    color: tuple[int, int, int] = (90, 90, 90),
    tasks: Callable[[int], str] = lambda k: f"task {k}",
) -> Path:
    """`episodes` episodes whose dims are stored in the order of `names` (and named so in info.json)."""
    frames = [np.full((32, 32, 3), color, np.uint8) for _ in range(FRAMES)]
    eps = [
        LeRobotEpisode(dim_values(k, names), dim_values(k, names), {"top": frames, "wrist": frames}, tasks(k))
        for k in range(episodes)
    ]
    write_lerobot(root, version, eps, FPS, (names, names), codec="libx264")
    return root


def edit_info(root: Path, change: Callable[[dict], None]) -> None:
    path = root / "meta/info.json"
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info, indent=4))


def data_file(root: Path, e: int) -> Path:
    """Episode `e`'s parquet in v2.x; the one data file of every episode in v3.0."""
    if (root / "meta/tasks.jsonl").exists():
        return root / f"data/chunk-000/episode_{e:06d}.parquet"
    return root / "data/chunk-000/file-000.parquet"


def edit_data(root: Path, e: int, change: Callable[[pa.Table], pa.Table]) -> None:
    path = data_file(root, e)
    pq.write_table(change(pq.read_table(path)), path)


def delete_episode(root: Path, e: int) -> None:
    """Remove episode `e` the way a deleted demo leaves a dataset: the other episodes keep their index."""
    if (root / "meta/tasks.jsonl").exists():
        path = root / "meta/episodes.jsonl"
        lines = [x for x in path.read_text().splitlines() if json.loads(x)["episode_index"] != e]
        path.write_text("".join(x + "\n" for x in lines))
        data_file(root, e).unlink()
        for video in root.glob(f"videos/chunk-000/*/episode_{e:06d}.mp4"):
            video.unlink()
        return
    meta = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(meta)
    pq.write_table(table.filter(pc.not_equal(table.column("episode_index"), e)), meta)
    edit_data(root, e, lambda t: t.filter(pc.not_equal(t.column("episode_index"), e)))


def open_dataset(
    folder: Path, root: Path, **entry: object
) -> tuple[RobotSource, Embodiment, list[EpisodeRef]]:
    """The dataset through a sources file whose entry adds `entry` (e.g. success=..., keys=...)."""
    _info.cache_clear()
    dataset = {"name": "ds", "kind": "ME", "format": "lerobot", "path": str(root), "embodiment": str(SPEC)}
    path = folder / "sources.yaml"
    path.write_text(yaml.safe_dump({"datasets": [{**dataset, **entry}]}, sort_keys=False))
    sources = load_sources(path)
    src = sources.datasets[0]
    return src, sources.embodiment(src), list_episodes(sources, src)


def read_rows(ref: EpisodeRef, src: RobotSource, emb: Embodiment) -> list[dict]:
    return as_written(read_episode(ref, src, emb))
