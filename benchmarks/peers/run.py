"""`make bench-peers`: samples/s of the trainer's batch stream against LeRobot's `LeRobotDataset` reading the
same Mobile-ALOHA episodes (3 cameras, 50-step action chunks, batches of 32, shuffled), measured in the
same run, alternately. LeRobot runs in its own environment (.venv-peers) through lerobot_side.py.

    python -m benchmarks.peers.run [--work .bench] [--out benchmarks/peers] [--size 480x640|native]
                                   [--peers-python .venv-peers/bin/python]

Steps, each cached in WORK/peers/ and redone only when its inputs change: copies of the bundled episodes
at --size (real Mobile ALOHA cameras are 480x640; the samples are 160x120), our ingest of them, LeRobot's
writer turning them into a v3.0 dataset (AV1 video). Then ours and LeRobot's readers at 0 and 2 workers.
Writes OUT/RESULTS.md and OUT/results.json.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import yaml
from PIL import Image

from benchmarks.bench_ingest import SAMPLES, ingest_one
from benchmarks.bench_loader import DATASET, _mixture, loader_rate
from benchmarks.common import Result

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[2]
SIDE = Path(__file__).with_name("lerobot_side.py")
EPISODES = SAMPLES / "mobile_aloha"
IMAGES = "/observations/images"
JPEG_QUALITY = 95
COPY_STAMP = "peers_copy.json"  # in a folder of resized copies: their size and sources
INGEST_STAMP = "peers_inputs.json"  # in our layout: the episodes it was ingested from
WRITE_SUMMARY = "peers_write.json"  # in the LeRobot root: written by lerobot_side.py write
WORKERS = (0, 2)
BATCH, BATCHES, CHUNK = 32, 30, 50  # CHUNK: the layout's action chunk; LeRobot is asked for the same
GOAL = 8.0
MAKE_HINT = "`make bench-peers` builds it"


def _say(t0: float, msg: str) -> None:
    print(f"[{time.perf_counter() - t0:6.0f}s] {msg}", file=sys.stderr, flush=True)


def parse_size(text: str) -> tuple[int, int] | None:
    """'480x640' -> (480, 640) (height x width); 'native' -> None."""
    if text == "native":
        return None
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected HxW (e.g. 480x640) or 'native'")
    return int(m.group(1)), int(m.group(2))


def episodes(folder: Path) -> list[Path]:
    """The folder's *.hdf5 episodes in index order (episode_2 before episode_10)."""

    def order(p: Path) -> tuple[int, str]:
        m = re.search(r"(\d+)$", p.stem)
        return (int(m.group(1)) if m else -1, p.name)

    return sorted(folder.glob("*.hdf5"), key=order)


def file_digests(paths: list[Path]) -> dict[str, str]:
    """{file name: sha256}, as lerobot_side.py records them."""
    out = {}
    for p in paths:
        with p.open("rb") as f:
            out[p.name] = hashlib.file_digest(f, "sha256").hexdigest()
    return out


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- resized copies -------------------------------------------------------------------------------------


def _resized_jpeg(raw: np.ndarray, size: tuple[int, int]) -> bytes:
    with Image.open(io.BytesIO(raw.tobytes())) as im:  # zero padding after the end marker is ignored
        small = im.convert("RGB")
    buf = io.BytesIO()
    small.resize((size[1], size[0]), Image.BILINEAR).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _copy_images(src: h5py.Group, dst: h5py.Group, compressed: bool, size: tuple[int, int]) -> np.ndarray:
    """Every camera of `src` resized into `dst` in the same layout; the JPEG lengths (cameras, T) when
    compressed, rows in the group's order (the recorder's camera order, cam_high first)."""
    lengths = []
    for cam, ds in src.items():
        kw = {"compression": ds.compression, "compression_opts": ds.compression_opts}
        if compressed:
            encoded = [_resized_jpeg(ds[i], size) for i in range(ds.shape[0])]
            lens = np.array([len(e) for e in encoded], dtype=np.int64)
            padded = np.zeros((len(encoded), int(lens.max())), dtype=np.uint8)
            for i, e in enumerate(encoded):
                padded[i, : len(e)] = np.frombuffer(e, dtype=np.uint8)
            out = dst.create_dataset(cam, data=padded, chunks=(1, padded.shape[1]), track_times=False, **kw)
            lengths.append(lens)
        else:
            stack = np.stack(
                [
                    np.asarray(Image.fromarray(ds[i]).resize((size[1], size[0]), Image.BILINEAR))
                    for i in range(len(ds))
                ]
            )
            out = dst.create_dataset(cam, data=stack, chunks=(1, *stack.shape[1:]), track_times=False, **kw)
        out.attrs.update(dict(ds.attrs))
    return np.stack(lengths) if lengths else np.zeros((0, 0), np.int64)


def _copy_tree(
    src: h5py.Group, dst: h5py.Group, compressed: bool, size: tuple[int, int]
) -> np.ndarray | None:
    dst.attrs.update(dict(src.attrs))
    lengths = None
    for name, item in src.items():
        if isinstance(item, h5py.Group):
            sub = dst.create_group(name, track_order=False)
            if item.name == IMAGES:
                sub.attrs.update(dict(item.attrs))
                lengths = _copy_images(item, sub, compressed, size)
            else:
                found = _copy_tree(item, sub, compressed, size)
                lengths = found if found is not None else lengths
        elif not (compressed and item.name == "/compress_len"):
            src.copy(item, dst, name=name)
    return lengths


def resize_episode(src: Path, dst: Path, size: tuple[int, int]) -> None:
    """`src` with every camera frame resized to `size` (H, W; bilinear, JPEG q95 when compressed) and
    every other dataset and attribute copied as it is."""
    with h5py.File(src, "r") as fi, h5py.File(dst, "w", track_order=False) as fo:
        compressed = bool(fi.attrs.get("compress", False))
        lengths = _copy_tree(fi, fo, compressed, size)
        if compressed:
            old = fi["compress_len"]
            fo.create_dataset("compress_len", data=lengths.astype(old.dtype), track_times=False)
            fo["compress_len"].attrs.update(dict(old.attrs))


def write_copies(src: Path, dst: Path, size: tuple[int, int]) -> bool:
    """Resized copies of `src`'s episodes in `dst`; False (nothing done) when they are there already."""
    paths = episodes(src)
    want = {"size": list(size), "jpeg_quality": JPEG_QUALITY, "sources": file_digests(paths)}
    have = _read_json(dst / COPY_STAMP)
    fresh = have and all(have.get(k) == v for k, v in want.items())
    if fresh and have.get("copies") == file_digests(episodes(dst)):
        return False
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for p in paths:
        resize_episode(p, dst / p.name, size)
    want["copies"] = file_digests(episodes(dst))
    (dst / COPY_STAMP).write_text(json.dumps(want, indent=2) + "\n")
    return True


# --- ours ------------------------------------------------------------------------------------------------


def _sources_yaml(folder: Path, path: Path) -> Path:
    """samples/sources.yaml's mobile_aloha_sim entry, pointed at `folder`, written to `path`."""
    spec = yaml.safe_load((SAMPLES / "sources.yaml").read_text())
    entry = next(d for d in spec["datasets"] if d["name"] == DATASET)
    entry["path"] = str(folder.resolve())
    if entry["embodiment"].endswith((".yaml", ".yml")):  # else the name of a shipped spec
        entry["embodiment"] = str(SAMPLES / entry["embodiment"])
    path.write_text(yaml.safe_dump({"datasets": [entry]}))
    return path


def ingest_ours(folder: Path, sources: Path, out: Path, digests: dict[str, str]) -> dict | None:
    """`vlamix ingest` of the episodes into `out`; None when `out` holds them already."""
    stamp = out / INGEST_STAMP
    if (out / "manifest.json").is_file() and (_read_json(stamp) or {}).get("episodes") == digests:
        return None
    job = ingest_one(DATASET, out, sources=_sources_yaml(folder, sources))
    stamp.write_text(json.dumps({"episodes": digests, "folder": str(folder)}, indent=2) + "\n")
    return job


# --- LeRobot (its own environment) -----------------------------------------------------------------------


def _peers_env(work: Path) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["HF_HOME"] = str(work / "hf_home")  # the datasets library's Arrow cache stays in the scratch folder
    return env


def check_peers(python: Path) -> dict:
    """The peers environment's versions, or a one-line error saying how to build it."""
    if not (python.is_file() and os.access(python, os.X_OK)):
        raise SystemExit(f"bench-peers: no peers environment at {python}; {MAKE_HINT}")
    if shutil.which("ffmpeg") is None:
        raise SystemExit(
            "bench-peers: ffmpeg not found (torchcodec needs FFmpeg's shared libraries: apt-get install ffmpeg)"
        )
    probe = (
        "import json, lerobot, torch, torchcodec, torchcodec.decoders; print(json.dumps({'lerobot': "
        "lerobot.__version__, 'torch': torch.__version__, 'torchcodec': torchcodec.__version__}))"
    )
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"bench-peers: {python} cannot load lerobot + torchcodec ({last}); {MAKE_HINT}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_side(python: Path, args: list[str], env: dict, log: Path) -> tuple[dict, list[str]]:
    """lerobot_side.py's JSON line; its stderr goes to `log` (our own progress lines also to ours), and
    the distinct warnings it printed come back."""
    cmd = [str(python), str(SIDE), *args]
    warnings: list[str] = []
    with log.open("w") as f:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
        )
        for line in proc.stderr:  # stdout is one short line: it cannot fill its pipe meanwhile
            f.write(line)
            if line.startswith("  lerobot_side:"):
                print(line.rstrip(), file=sys.stderr, flush=True)
            elif (
                re.search(r"warn", line, re.I)
                and not line.startswith("Svt[")
                and line.strip() not in warnings
            ):
                warnings.append(line.strip())
        stdout = proc.stdout.read()
        rc = proc.wait()
    if rc != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise SystemExit(f"bench-peers: {' '.join(cmd)} failed (exit {rc}); log {log}:\n{tail}")
    return json.loads(stdout.strip().splitlines()[-1]), warnings


def write_lerobot(
    python: Path, folder: Path, root: Path, digests: dict, env: dict, logs: Path
) -> dict | None:
    """LeRobot's writer over the episodes into `root`; None when `root` holds them already."""
    have = _read_json(root / WRITE_SUMMARY) or {}
    if have.get("episodes") == digests and have.get("fps") == 50 and (root / "meta" / "info.json").is_file():
        return None
    args = ["write", "--episodes", str(folder), "--root", str(root), "--fps", "50"]
    summary, _ = run_side(python, args, env, logs / f"{root.name}.write.log")
    return summary


# --- results ---------------------------------------------------------------------------------------------


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"


def _machine() -> str:
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"


def write_results(out: Path, results: list[Result], context: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {"machine": _machine(), **context, "results": [r.to_json() for r in results]}
    (out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    h, w = context["frame_size"]
    lines = [
        "# bench-peers results",
        "",
        f"`make bench-peers` on {_machine()}, {context['date']}, {context['seconds'] / 60:.1f} minutes. "
        f"Mobile-ALOHA sample episodes at {h}x{w} ({context['frames']} frames, 3 cameras), read by our "
        "trainer loader and by LeRobot's `LeRobotDataset` alternately in the same run; the ratio is ours "
        "over LeRobot's (higher is better). Absolute numbers depend on the machine. See README.md.",
        "",
        "| figure | ours | baseline | ratio | goal met |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        met = {True: "yes", False: "**no**", None: ""}[r.met]
        lines.append(
            f"| {r.name} | {_fmt(r.ours)} {r.unit} | {_fmt(r.baseline)} ({r.baseline_name}) | "
            f"{_fmt(r.ratio)} | {met} (>= {r.goal:g}x) |"
        )
    lines += ["", "## Notes", ""] + [f"- **{r.name}**: {r.note}" for r in results]
    steps = ", ".join(f"{k} {v:.0f}s" for k, v in context["steps_seconds"].items())
    lines += [f"- Steps (cached ones take ~0s): {steps}.", ""]
    (out / "RESULTS.md").write_text("\n".join(lines))


# --- main ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path(".bench"), help="scratch folder (WORK/peers/...)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/peers"), help="where RESULTS.md goes")
    p.add_argument("--size", default="480x640", help="HxW of the episodes' frames, or 'native' (160x120)")
    p.add_argument("--peers-python", type=Path, default=Path(".venv-peers/bin/python"))
    args = p.parse_args(argv)
    try:
        size = parse_size(args.size)
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0, steps = time.perf_counter(), {}
    python = args.peers_python if args.peers_python.is_absolute() else REPO / args.peers_python
    versions = check_peers(python)
    work = args.work.resolve() / "peers"
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    tag = "native" if size is None else f"{size[0]}x{size[1]}"
    env = _peers_env(work)

    def step(name: str, fn):
        _say(t0, f"{name} ...")
        t = time.perf_counter()
        result = fn()
        steps[name] = time.perf_counter() - t
        _say(t0, f"{name}: {'cached' if result is None else 'done'} in {steps[name]:.0f}s")
        return result

    folder = EPISODES if size is None else work / f"mobile_aloha_{tag}"
    if size is not None:
        step(f"resized copies at {tag}", lambda: write_copies(EPISODES, folder, size) or None)
    digests = file_digests(episodes(folder))
    layout, root = work / f"ours_{tag}", work / f"lerobot_{tag}"
    step(
        "our ingest", lambda: ingest_ours(folder, work / f"mobile_aloha_{tag}.sources.yaml", layout, digests)
    )
    step("LeRobot's writer", lambda: write_lerobot(python, folder, root, digests, env, logs))
    written = _read_json(root / WRITE_SUMMARY)
    mix = work / f"mix_{tag}"
    mix.mkdir(exist_ok=True)
    mixture = _mixture(layout, mix)

    results, warnings = [], []
    for workers in WORKERS:  # alternately, so a disturbance of the machine hits both sides alike
        ours = step(f"ours, {workers} workers", lambda w=workers: loader_rate(mixture, w, BATCH, BATCHES))
        read_args = ["read", "--root", str(root), "--workers", str(workers), "--batch", str(BATCH)]
        read_args += ["--batches", str(BATCHES), "--chunk", str(CHUNK), "--seed", "0"]
        log = logs / f"{root.name}.read_w{workers}.log"
        theirs, warned = step(
            f"LeRobotDataset, {workers} workers", lambda a=read_args, g=log: run_side(python, a, env, g)
        )
        warnings += [x for x in warned if x not in warnings]
        _say(
            t0, f"{workers} workers: ours {ours:.1f}, LeRobotDataset {theirs['samples_per_s']:.1f} samples/s"
        )
        h, w = theirs["frame_size"]
        results.append(
            Result(
                "peers",
                f"loader samples/s vs LeRobotDataset, {workers} dataloader workers",
                "samples/s",
                ours,
                theirs["samples_per_s"],
                f"LeRobotDataset {theirs['lerobot']} ({theirs['video_backend']}, AV1 mp4)",
                goal=GOAL,
                note=f"the same {written['frames']} frames at {h}x{w}, {theirs['cameras']} cameras, "
                f"{CHUNK}-step action chunk, batches of {BATCH}, shuffled random access, {BATCHES} timed batches "
                f"after one warm-up. Ours: 4 camera slots decoded at 224x224 JPEG (3 cameras + 1 absent), state, "
                f"tokens. LeRobot: {theirs['cameras']} AV1 frames decoded at {h}x{w} (torchcodec "
                f"{theirs['torchcodec']}), state, action chunk via delta_timestamps; lerobot "
                f"{theirs['lerobot']}, torch {theirs['torch']}",
                extra={"lerobot_read": theirs},
            )
        )
    seconds = time.perf_counter() - t0
    context = {
        "date": datetime.date.today().isoformat(),
        "seconds": round(seconds, 1),
        "size": tag,
        "frame_size": results[0].extra["lerobot_read"]["frame_size"],
        "frames": written["frames"],
        "peers": versions,
        "lerobot_write": written,
        "lerobot_warnings": warnings,
        "steps_seconds": {k: round(v, 1) for k, v in steps.items()},
    }
    write_results(args.out, results, context)
    for r in results:
        met = {True: "ok", False: "SHORT", None: "--"}[r.met]
        print(f"{met:>5}  {r.ratio:6.2f}x  {r.name} ({r.ours:.1f} vs {r.baseline:.1f})", file=sys.stderr)
    for line in warnings:
        print(f"LeRobot warned: {line}", file=sys.stderr)
    print(f"wrote {args.out}/RESULTS.md in {seconds / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()
