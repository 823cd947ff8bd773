"""HL subtask spans and VI verbal instructions over the bundled MM and ME episodes, derived from what the
robots did (gripper close/open events, the base stopping), as a labeller watching the videos would."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq

__all__ = ["generate_annotations"]


def _events(grip: np.ndarray, fps: float) -> list[tuple[float, str]]:
    """Times (s) of the command crossing half-closed: ('close' or 'open'), for a gripper with 1 = open."""
    closed = grip < 0.5
    out = []
    for i in np.flatnonzero(closed[1:] != closed[:-1]) + 1:
        out.append((round(i / fps, 3), "close" if closed[i] else "open"))
    return out


def _mm(folder: Path) -> tuple[list[dict], list[dict]]:
    hl, vi = [], []
    for episode, path in enumerate(
        sorted(folder.glob("episode_*.hdf5"), key=lambda p: int(re.search(r"(\d+)\.hdf5$", p.name).group(1)))
    ):
        with h5py.File(path, "r") as f:
            action, base = f["action"][()], f["base_action"][()]
            task = f.attrs["task"]
        fps, n = 50.0, len(action)
        colors = re.findall(r"the (\w+) cube", task)
        events = []
        for arm, side in ((0, "left"), (1, "right")):
            for t, what in _events(action[:, 7 * arm + 6], fps):
                text = (
                    f"pick up the {colors[arm]} cube with the {side} arm"
                    if what == "close"
                    else f"drop the {colors[arm]} cube in the bowl"
                )
                events.append((t, text))
        events.sort()
        start = 0.0
        for t, text in [*events, (round(n / fps, 3), "back away from the table")]:
            hl.append(
                {"dataset": "mobile_aloha_sim", "episode": episode, "start": start, "end": t, "subtask": text}
            )
            start = t
        arrived = round(int(np.argmax(base[:, 0])) / fps + 1.0, 3)
        first_drop = next(t for t, text in events if text.startswith("drop"))
        last_drop = max(t for t, text in events if text.startswith("drop"))
        for t, text in (
            (0.0, "drive up to the table"),
            (arrived, f"grab the {colors[0]} cube on your left"),
            (first_drop, f"good, now put the {colors[1]} one in the bowl too"),
            (round(last_drop + 0.5, 3), "all done, back up"),
        ):
            vi.append({"dataset": "mobile_aloha_sim", "episode": episode, "time": t, "instruction": text})
    return hl, vi


def _me(folder: Path) -> list[dict]:
    info = json.loads((folder / "meta/info.json").read_text())
    tasks = {
        d["task_index"]: d["task"]
        for d in map(json.loads, (folder / "meta/tasks.jsonl").read_text().splitlines())
    }
    hl = []
    for path in sorted((folder / "data").rglob("episode_*.parquet")):
        t = pq.read_table(path)
        episode = t.column("episode_index")[0].as_py()
        task = tasks[t.column("task_index")[0].as_py()]
        block, target = re.match(r"put the (\w+) block on the (\w+)", task).groups()
        action = np.asarray(t.column("action").to_pylist())
        (close, _), (open_, _) = _events(action[:, 6], info["fps"])[:2]
        end = round(t.num_rows / info["fps"], 3)
        for start, stop, text in (
            (0.0, close, f"pick up the {block} block"),
            (close, open_, f"place it on the {target}"),
            (open_, end, "move the arm back"),
        ):
            hl.append(
                {
                    "dataset": "lerobot_v21_sim",
                    "episode": episode,
                    "start": start,
                    "end": stop,
                    "subtask": text,
                }
            )
    return hl


def generate_annotations(samples: Path) -> list[Path]:
    """Write samples/annotations/{mm_subtasks,mm_verbal,me_subtasks}.jsonl from the bundled episodes."""
    out = samples / "annotations"
    out.mkdir(parents=True, exist_ok=True)
    hl, vi = _mm(samples / "mobile_aloha")
    files = {
        "mm_subtasks.jsonl": hl,
        "mm_verbal.jsonl": vi,
        "me_subtasks.jsonl": _me(samples / "lerobot_v21"),
    }
    for name, lines in files.items():
        (out / name).write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
    return [out / name for name in files]
