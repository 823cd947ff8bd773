"""Loader: samples/s reaching the trainer (every camera slot decoded at 224x224, state, action chunk and
tokens, collated into batches) from our shards, in this process and with 2 dataloader workers, against
the bound of reading the same tars front to back and decoding their JPEGs alone (one process, the same
libjpeg-turbo decoder into one reused buffer)."""

from __future__ import annotations

import itertools
import json
import tarfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Result
from vlamix.mixtures.resolve import resolve
from vlamix.shards.random_access import ustar_members
from vlamix.trainer.loader import BatchStream, batches
from vlamix.transforms.image import IMAGE_SIZE, decode_jpeg_into

DATASET = "mobile_aloha_sim"  # three cameras (the fourth slot is an absent camera's black frame)


def _mixture(layout: Path, folder: Path) -> Path:
    path = folder / "loader_bench.yaml"
    path.write_text(
        f"name: loader_bench\nstage: posttrain\nlayouts: [{layout.resolve() / 'manifest.json'}]\n"
        f"components: [{{dataset: {DATASET}}}]\n"
    )
    return path


def _members_in_order(shard: Path):
    """(name, bytes) of a shard's members front to back: the whole file read at once and walked with the
    same header parser random access uses (tarfile's stream, were a header unusual)."""
    data = shard.read_bytes()
    entries = ustar_members(data)
    if entries is not None:
        yield from entries
        return
    with tarfile.open(shard, mode="r|") as tar:
        for m in tar:
            yield m.name, tar.extractfile(m).read()


def tar_and_jpeg_bound(layout: Path, samples: int) -> tuple[float, int]:
    """Samples/s of reading the dataset's tars in order and decoding every JPEG member to RGB arrays."""
    manifest = json.loads((layout / "manifest.json").read_text())
    shards = [layout / s["path"] for s in manifest["datasets"][DATASET]["shards"]]
    pixels = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    seen, t0 = set(), time.perf_counter()
    for shard in itertools.cycle(shards):
        for name, data in _members_in_order(shard):
            if name.endswith(".jpg"):
                decode_jpeg_into(data, pixels)
            seen.add(name.split(".", 1)[0])
            if len(seen) >= samples:
                return samples / (time.perf_counter() - t0), samples
    raise AssertionError("unreachable")


def loader_rate(mixture: Path, workers: int, batch_size: int, batches_n: int) -> float:
    """Samples/s of the trainer's batch stream (no augmentation), after one warm-up batch."""
    stream = BatchStream(resolve(mixture), seed=0, batch_size=batch_size)
    it = batches(stream, workers)
    next(it)
    t0 = time.perf_counter()
    for _ in range(batches_n):
        next(it)
    rate = batches_n * batch_size / (time.perf_counter() - t0)
    del it
    return rate


def run(layout: Path, folder: Path, batch_size: int = 32, batches_n: int = 30) -> list[Result]:
    mixture = _mixture(layout, folder)
    bound, _ = tar_and_jpeg_bound(layout, batch_size * batches_n)
    out = []
    for workers in (0, 2):
        rate = loader_rate(mixture, workers, batch_size, batches_n)
        out.append(
            Result(
                "loader",
                f"samples/s, {workers} dataloader workers",
                "samples/s",
                rate,
                bound,
                "tar read + JPEG decode alone (1 process)",
                goal=0.9,
                note=f"{DATASET}: 4 camera slots at 224x224 (3 cameras + 1 absent), state, 50-step chunk, "
                f"tokens; batches of {batch_size}, random access by byte range, no augmentation",
            )
        )
    return out
