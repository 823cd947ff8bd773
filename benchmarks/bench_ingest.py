"""Ingest: frames/s per core from each raw format to published shards (`vlamix ingest --workers 1`, one
dataset at a time, the whole job) on frames of real camera size (480x640, benchmarks/frames480.py),
against the naive bound of the same frames' unavoidable work alone, in one process: read the encoded
frames (HDF5 JPEG frames, mp4 video, TFRecord images), decode them at full size, resize to 224 and encode
the 224 JPEG, with the fastest library the project uses for each (simplejpeg's libjpeg-turbo for JPEG,
PyAV for video, Pillow's resize)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import av
import h5py
import simplejpeg
import yaml

from benchmarks import frames480
from benchmarks.common import Result
from benchmarks.profile import profile_of
from vlamix.sources.tf_example import decode_example
from vlamix.sources.tfrecord import read_record_at, scan_records
from vlamix.transforms.image import JPEG_QUALITY, ResizeWithPad

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
FORMATS = {  # dataset of samples/sources.yaml -> the format it stands for
    "mobile_aloha_sim": "Mobile-ALOHA HDF5 (3 cameras)",
    "lerobot_v21_sim": "LeRobot v2.1 (parquet + mp4, 2 cameras)",
    "lerobot_v30_sim": "LeRobot v3.0 (parquet + mp4, 2 cameras)",
    "arm6_sim": "RLDS TFRecord (2 cameras)",
}
_resize = ResizeWithPad()
REPEATS = 2  # runs of each side per format


def _encode(image) -> None:
    simplejpeg.encode_jpeg(_resize(image), quality=JPEG_QUALITY, colorspace="RGB")


def decode_jpeg(data: bytes):
    return simplejpeg.decode_jpeg(data, colorspace="RGB")


def _bound_hdf5(folder: Path) -> int:
    n = 0
    for path in sorted(folder.glob("*.hdf5")):
        with h5py.File(path) as f:
            for cam in f["observations/images"].values():
                for frame in cam:
                    _encode(decode_jpeg(frame.tobytes()) if frame.ndim == 1 else frame)
                    n += 1
    return n


def _bound_video(folder: Path) -> int:
    n = 0
    for path in sorted(folder.rglob("*.mp4")):
        with av.open(str(path)) as box:
            for frame in box.decode(video=0):
                _encode(frame.to_ndarray(format="rgb24"))
                n += 1
    return n


def _bound_tfrecord(folder: Path) -> int:
    n = 0
    for path in sorted(folder.glob("*.tfrecord*")):
        for index, offset, _ in scan_records(path):
            example = decode_example(read_record_at(path, offset, index))
            for key, values in example.items():
                if "image" in key and isinstance(values, list):
                    for data in values:
                        _encode(decode_jpeg(data))
                        n += 1
    return n


def _bound(dataset: str, path: Path) -> tuple[float, int]:
    """(seconds, images) of decode + resize + encode alone."""
    fn = (
        _bound_hdf5
        if dataset == "mobile_aloha_sim"
        else _bound_tfrecord
        if "arm6" in dataset
        else _bound_video
    )
    t0 = time.perf_counter()
    images = fn(path)
    return time.perf_counter() - t0, images


def ingest_cmd(sources: Path, out: Path, workers: int) -> list[str]:
    """The `vlamix ingest` command line every ingest benchmark runs (always a fresh build)."""
    cmd = ["ingest", "--sources", str(sources), "--out", str(out), "--workers", str(workers), "--fresh"]
    return [sys.executable, "-m", "vlamix.cli", *cmd]


def one_dataset(dataset: str, out: Path, catalog: Path = SAMPLES / "sources.yaml") -> Path:
    """A sources file beside `out` holding `dataset`'s entry of `catalog`, its paths made absolute."""
    spec = yaml.safe_load(catalog.read_text())
    entry = next(d for d in spec["datasets"] if d["name"] == dataset)
    entry["path"] = str(catalog.parent / entry["path"])
    if entry["embodiment"].endswith((".yaml", ".yml")):  # else the name of a shipped spec
        entry["embodiment"] = str(catalog.parent / entry["embodiment"])
    sources = out.parent / f"{dataset}_sources.yaml"
    sources.parent.mkdir(parents=True, exist_ok=True)
    sources.write_text(yaml.safe_dump({"datasets": [entry]}))
    return sources


def ingest_one(dataset: str, out: Path, workers: int = 1, sources: Path | None = None) -> dict:
    """Run `vlamix ingest` on one dataset of the samples (or a given sources file); its wall time, frames
    written, and the job's own report (steps' seconds, the driver's peak RSS)."""
    sources = sources or one_dataset(dataset, out)
    cmd = [*ingest_cmd(sources, out, workers), "--json"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)["datasets"]
    report = json.loads((out / "reports" / "ingest.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    frames = sum(d["accounting"].get("frames_written", 0) for d in manifest["datasets"].values())
    return {"wall": wall, "frames": frames, "report": report, "summary": summary}


def run(folder: Path) -> tuple[list[Result], dict[str, Path]]:
    catalog = frames480.build(folder)
    spec = {d["name"]: d for d in yaml.safe_load(catalog.read_text())["datasets"]}
    results, layouts = [], {}
    for dataset, label in FORMATS.items():
        out = folder / "ingest" / dataset
        sources = one_dataset(dataset, out, catalog)
        runs, bounds = [], []
        for _ in range(REPEATS):  # in turns, the best of each: a slow spell falls on both sides
            runs.append(ingest_one(dataset, out, sources=sources))
            bounds.append(_bound(dataset, catalog.parent / spec[dataset]["path"]))
        job = min(
            runs,
            key=lambda j: j["report"]["steps_seconds"]["extract"] + j["report"]["steps_seconds"]["build"],
        )
        seconds, images = min(bounds)
        layouts[dataset] = out
        cams = images / job["frames"]
        steps = job["report"]["steps_seconds"]
        per_frame = steps["extract"] + steps["build"]
        results.append(
            Result(
                "ingest",
                f"frames/s per core: {label}",
                "frames/s",
                job["frames"] / per_frame,
                job["frames"] / seconds,
                "naive bound: read, decode at full size, resize to 224, encode",
                goal=1.0,
                note=f"{job['frames']} frames at 480x640 ({cams:.0f} images each): the extract and build steps "
                f"of `vlamix ingest --workers 1`, best of {REPEATS} runs (the bound too); the whole job with "
                f"start-up, stats, tokenizer fit and index: {job['frames'] / job['wall']:.0f} frames/s",
                extra={
                    "wall_s": job["wall"],
                    "steps_seconds": steps,
                    "extract_build_frames_per_s": job["frames"] / per_frame,
                    "profile": profile_of(job["report"], job["frames"]),
                },
            )
        )
    return results, layouts
