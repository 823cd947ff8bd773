"""LeRobot's side of `make bench-peers`. Runs only in the peers environment (.venv-peers: lerobot 0.4.4,
torch 2.9.1, torchcodec 0.9.1) and imports nothing of this repository.

    python lerobot_side.py write --episodes DIR --root ROOT [--fps 50]
    python lerobot_side.py read --root ROOT [--workers 0] [--batch 32] [--batches 30] [--chunk 50] [--seed 0]

`write` turns Mobile-ALOHA HDF5 episodes into a LeRobot v3.0 dataset with LeRobot's own writer
(`LeRobotDataset.create`, `add_frame`, `save_episode`, `finalize`; AV1 video, LeRobot's default codec) and
leaves WRITE_SUMMARY in ROOT, naming the inputs by their SHA-256. `read` times `LeRobotDataset` with a
50-step action chunk (`delta_timestamps`) behind a shuffling `torch.utils.data.DataLoader` and prints one
JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub: nothing downloads
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO_ID = "vlamix/mobile_aloha_peers"  # a name only: the dataset lives in ROOT and never leaves it
WRITE_SUMMARY = "peers_write.json"  # what `write` left in ROOT; the orchestrator reuses ROOT by it
IMAGES = "observations/images"
ARM_DIMS = 14


def _say(msg: str) -> None:
    print(f"  lerobot_side: {msg}", file=sys.stderr, flush=True)


def _episodes(folder: Path) -> list[Path]:
    def order(p: Path) -> tuple[int, str]:
        m = re.search(r"(\d+)$", p.stem)
        return (int(m.group(1)) if m else -1, p.name)

    paths = sorted(folder.glob("*.hdf5"), key=order)
    if not paths:
        raise SystemExit(f"lerobot_side write: no *.hdf5 episodes in {folder}")
    return paths


def file_digests(paths: list[Path]) -> dict[str, str]:
    """{file name: sha256} of the input episodes (the orchestrator computes the same)."""
    out = {}
    for p in paths:
        with p.open("rb") as f:
            out[p.name] = hashlib.file_digest(f, "sha256").hexdigest()
    return out


def _frame(f: h5py.File, cam: str, i: int, compressed: bool) -> np.ndarray:
    raw = f[f"{IMAGES}/{cam}"][i]
    if not compressed:
        return np.ascontiguousarray(raw)
    # JPEG bytes zero-padded to the longest frame; the decoder stops at the end marker (as ALOHA's own
    # loader relies on), so /compress_len, whose row order the file does not record, is not needed.
    return np.asarray(Image.open(io.BytesIO(raw.tobytes())).convert("RGB"))


def _features(first: Path) -> tuple[dict, list[str]]:
    with h5py.File(first, "r") as f:
        cams = sorted(f[IMAGES].keys())
        compressed = bool(f.attrs.get("compress", False))
        shapes = {cam: _frame(f, cam, 0, compressed).shape for cam in cams}
    features = {
        f"observation.images.{cam}": {
            "dtype": "video",
            "shape": shapes[cam],
            "names": ["height", "width", "channels"],
        }
        for cam in cams
    }
    features["observation.state"] = {
        "dtype": "float32",
        "shape": (ARM_DIMS,),
        "names": [f"qpos_{i}" for i in range(ARM_DIMS)],
    }
    features["action"] = {
        "dtype": "float32",
        "shape": (ARM_DIMS + 2,),
        "names": [f"action_{i}" for i in range(ARM_DIMS)] + ["base_linear", "base_angular"],
    }
    return features, cams


def _clear_root(root: Path) -> None:
    """LeRobot's writer wants a root that does not exist; remove an earlier dataset of ours, nothing else."""
    if not root.exists():
        return
    ours = (root / WRITE_SUMMARY).is_file() or (root / "meta" / "info.json").is_file()
    if not ours and any(root.iterdir()):
        raise SystemExit(
            f"lerobot_side write: {root} exists and is not a LeRobot dataset; pick another --root"
        )
    shutil.rmtree(root)


def write(args: argparse.Namespace) -> None:
    import lerobot
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    paths = _episodes(args.episodes)
    digests = file_digests(paths)
    features, cams = _features(paths[0])
    _clear_root(args.root)
    t0 = time.perf_counter()
    ds = LeRobotDataset.create(
        repo_id=REPO_ID,
        fps=args.fps,
        features=features,
        root=args.root,
        robot_type="mobile_aloha",
        use_videos=True,
        image_writer_threads=args.image_writer_threads,
    )
    frames = 0
    for n, path in enumerate(paths):
        t_ep = time.perf_counter()
        with h5py.File(path, "r") as f:
            got = sorted(f[IMAGES].keys())
            if got != cams:
                raise SystemExit(f"lerobot_side write: {path} has cameras {got}, {paths[0].name} has {cams}")
            compressed = bool(f.attrs.get("compress", False))
            task = f.attrs["task"]
            task = task.decode() if isinstance(task, bytes) else str(task)
            qpos = f["observations/qpos"][()].astype(np.float32)
            action = np.concatenate([f["action"][()], f["base_action"][()]], axis=1).astype(np.float32)
            if qpos.shape[1] != ARM_DIMS or action.shape[1] != ARM_DIMS + 2:
                raise SystemExit(
                    f"lerobot_side write: {path}: qpos {qpos.shape}, action ++ base_action {action.shape}; "
                    f"expected ({ARM_DIMS},) and ({ARM_DIMS + 2},) per frame"
                )
            for i in range(len(qpos)):
                frame = {f"observation.images.{cam}": _frame(f, cam, i, compressed) for cam in cams}
                frame.update({"observation.state": qpos[i], "action": action[i], "task": task})
                ds.add_frame(frame)
        ds.save_episode()
        frames += len(qpos)
        _say(
            f"episode {n + 1}/{len(paths)} ({len(qpos)} frames) written in {time.perf_counter() - t_ep:.0f}s"
        )
    ds.finalize()
    seconds = time.perf_counter() - t0
    summary = {
        "repo_id": REPO_ID,
        "fps": args.fps,
        "episodes": digests,
        "frames": frames,
        "cameras": cams,
        "frame_size": list(features[f"observation.images.{cams[0]}"]["shape"][:2]),
        "vcodec": ds.vcodec,
        "lerobot": lerobot.__version__,
        "seconds": round(seconds, 1),
    }
    (args.root / WRITE_SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary), flush=True)


def read(args: argparse.Namespace) -> None:
    import lerobot
    import torch
    import torchcodec
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    info = json.loads((args.root / "meta" / "info.json").read_text())
    fps = info["fps"]
    ds = LeRobotDataset(
        REPO_ID, root=args.root, delta_timestamps={"action": [i / fps for i in range(args.chunk)]}
    )
    cams = list(ds.meta.camera_keys)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=args.batch,
        shuffle=True,
        num_workers=args.workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    it = iter(loader)
    batch = next(it)  # warm-up: workers started, decoders opened
    h, w = _check(batch, cams, args)
    t0 = time.perf_counter()
    for _ in range(args.batches):
        next(it)
    rate = args.batches * args.batch / (time.perf_counter() - t0)
    del it
    print(
        json.dumps(
            {
                "samples_per_s": rate,
                "workers": args.workers,
                "cameras": len(cams),
                "chunk": args.chunk,
                "batch": args.batch,
                "batches": args.batches,
                "frame_size": [h, w],
                "video_backend": ds.video_backend,
                "lerobot": lerobot.__version__,
                "torch": torch.__version__,
                "torchcodec": torchcodec.__version__,
            }
        ),
        flush=True,
    )


def _check(batch: dict, cams: list[str], args: argparse.Namespace) -> tuple[int, int]:
    """Fail loudly unless the batch holds every camera and a [B, chunk, 16] action chunk."""
    problems = []
    if len(cams) != 3:
        problems.append(f"{len(cams)} cameras {cams}, expected 3")
    shapes = {cam: tuple(batch[cam].shape) for cam in cams if cam in batch}
    for cam in cams:
        shape = shapes.get(cam)
        if shape is None or len(shape) != 4 or shape[:2] != (args.batch, 3):
            problems.append(f"{cam}: shape {shape}, expected ({args.batch}, 3, H, W)")
    action = tuple(batch["action"].shape) if "action" in batch else None
    if action != (args.batch, args.chunk, ARM_DIMS + 2):
        problems.append(f"action: shape {action}, expected ({args.batch}, {args.chunk}, {ARM_DIMS + 2})")
    if problems:
        raise SystemExit("lerobot_side read: unexpected batch: " + "; ".join(problems))
    return shapes[cams[0]][2], shapes[cams[0]][3]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser(
        "write", help="Mobile-ALOHA HDF5 episodes -> a LeRobot v3.0 dataset (LeRobot's writer)"
    )
    w.add_argument("--episodes", type=Path, required=True, help="folder of *.hdf5 episodes")
    w.add_argument("--root", type=Path, required=True, help="the dataset's root (replaced if ours)")
    w.add_argument("--fps", type=int, default=50)
    w.add_argument("--image-writer-threads", type=int, default=4, help="LeRobot's PNG writer threads")
    r = sub.add_parser("read", help="samples/s of LeRobotDataset behind a DataLoader; one JSON line")
    r.add_argument("--root", type=Path, required=True)
    r.add_argument("--workers", type=int, default=0, help="DataLoader num_workers")
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--batches", type=int, default=30, help="timed batches after one warm-up batch")
    r.add_argument("--chunk", type=int, default=50, help="action chunk length (delta_timestamps)")
    r.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.root = args.root.resolve()
    {"write": write, "read": read}[args.cmd](args)


if __name__ == "__main__":
    main()
