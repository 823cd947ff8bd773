"""LeRobot's side of `make interop-check`: load a vlamix export with LeRobot's own `LeRobotDataset` and compare
it with what vlamix expects. Runs only in the peers environment (.venv-peers: lerobot 0.4.4) and imports
nothing of this repository.

    python lerobot_check.py --root EXPORT_DATASET_DIR --expect EXPECT.json

EXPECT.json: {"frames": {global index: {"state": [...], "action": [...], "task": str, "subtask": str|null,
"image_mean": {video key: [r, g, b]}}}, "episodes": N, "frames_total": N, "tasks": [...]}. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing downloads
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--expect", type=Path, required=True)
    args = p.parse_args()
    import lerobot
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    expect = json.loads(args.expect.read_text())
    ds = LeRobotDataset(f"vlamix/{args.root.name}", root=args.root, video_backend="pyav")
    worst = {"state": 0.0, "action": 0.0, "image_mean": 0.0}
    tasks_ok = subtasks_ok = True
    for index, want in expect["frames"].items():
        item = ds[int(index)]
        for key, col in (("state", "observation.state"), ("action", "action")):
            got = item[col].numpy().astype(np.float64)
            worst[key] = max(worst[key], float(np.abs(got - np.asarray(want[key])).max()))
        tasks_ok &= item["task"] == want["task"]
        if want.get("subtask") is not None:
            subtasks_ok &= item.get("subtask") == want["subtask"]
        for cam, mean in want["image_mean"].items():
            img = item[cam].numpy()  # [3, H, W] float in [0, 1]
            worst["image_mean"] = max(
                worst["image_mean"], float(np.abs(img.mean(axis=(1, 2)) * 255 - mean).max())
            )
    out = {
        "lerobot": lerobot.__version__,
        "dataset": args.root.name,
        "episodes": ds.meta.total_episodes,
        "frames": len(ds),
        "episodes_expected": expect["episodes"],
        "frames_expected": expect["frames_total"],
        "tasks_equal": sorted(ds.meta.tasks.index) == sorted(expect["tasks"]),
        "frames_checked": len(expect["frames"]),
        "max_abs_state": worst["state"],
        "max_abs_action": worst["action"],
        "max_abs_channel_mean": worst["image_mean"],
        "task_per_frame_equal": bool(tasks_ok),
        "subtask_per_frame_equal": bool(subtasks_ok),
        "cameras": list(ds.meta.camera_keys),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line for the orchestrator
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        sys.exit(1)
