"""Training from a layout at a URL: the shard cache and the processes.

- **Fetched bytes per epoch with a cache of 10% of the layout.** The bundled samples ingested into many
  small shards (`--shard-samples 40`: about 170 shards over ten datasets) and served by Python's own
  `python -m http.server` (no Range support). A mixture weights every dataset by its size, so one epoch
  (as many draws as the layout has samples) is one pass over every dataset. The trainer's loader reads
  one epoch through a cache limited to 10% of the layout's bytes; the figure is bytes fetched / layout
  bytes (goal: at most 2). Beside it, the same loader with the sampler's shard-blind order
  (`--shuffle-block 0`, a permutation of all rows), measured over the first tenth of the epoch and
  scaled to a whole one.
- **Samples/s and data wait.** `vlamix train` (tiny, stage 1, batch 8, 2 dataloader workers, the
  defaults) on that mixture, from the HTTP server through a cold cache against the local folder, in 1
  process and in 2 (torchrun, gloo): samples/s of the steps after the first WARMUP, and the share of
  step time spent waiting for data (metrics.csv's `data_wait`, the slower rank's); best of 2 runs each,
  in turns."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from benchmarks.bench_ingest import ingest_cmd
from benchmarks.common import Result
from vlamix.mixtures.resolve import resolve, split_view
from vlamix.shards.shard_cache import ShardCache
from vlamix.trainer.loader import BatchStream, batches
from vlamix.trainer.sample_source import SampleSource

REPO = Path(__file__).resolve().parents[1]
SHARD_SAMPLES = 40
CACHE_SHARE = 0.10
BATCH = 32  # the loader's batch in the fetch measurement
STEPS, WARMUP = 40, 8
REPEATS = 2


def _layout(work: Path) -> Path:
    """The bundled samples in many small shards (built once into the work folder)."""
    out = work / "remote" / "out"
    stamp = out.parent / f"built-{SHARD_SAMPLES}"
    if not stamp.is_file() or not (out / "manifest.json").is_file():
        cmd = [*ingest_cmd(REPO / "samples" / "sources.yaml", out, 2), "--shard-samples", str(SHARD_SAMPLES)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
        stamp.write_text("")
    return out


def _mixture(folder: Path, name: str, manifest: str, layout: Path) -> Path:
    """Every dataset weighted by its samples: an epoch of draws is an epoch of every dataset."""
    m = json.loads((layout / "manifest.json").read_text())
    lines = [f"  - {{dataset: {name}, weight: {d['samples']}}}" for name, d in sorted(m["datasets"].items())]
    path = folder / f"remote_{name}.yaml"
    path.write_text(
        f"name: remote_bench\nstage: pretrain\nlayouts: [{manifest}]\ncomponents:\n" + "\n".join(lines)
    )
    return path


@contextmanager
def _python_http_server(folder: Path):
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        port = re.search(r"port (\d+)", line)
        if port is None:
            raise RuntimeError(f"python -m http.server did not start: {line!r}")
        yield f"http://127.0.0.1:{port.group(1)}"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def _fetched(mixture: Path, cache: Path, limit: int, shard_block: int, batches_n: int) -> tuple[int, int]:
    """(bytes fetched, samples read) by the trainer's loader over `batches_n` batches."""
    shutil.rmtree(cache, ignore_errors=True)
    res = split_view(resolve(mixture), held_out=False)
    source = SampleSource(res.manifests, ShardCache(cache, limit))
    stream = BatchStream(res, 0, BATCH, source=source, shard_block=shard_block, end=batches_n)
    fetched = samples = 0
    for _, batch in batches(stream, 0):
        fetched += batch.input["fetched_bytes"]
        samples += len(batch.keys)
    shutil.rmtree(cache, ignore_errors=True)
    return fetched, samples


def _train(mixture: Path, out: Path, processes: int, cache: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    args = [
        "train",
        "--stage",
        "pretrain",
        "--mixture",
        str(mixture),
        "--out",
        str(out),
        "--steps",
        str(STEPS),
    ]
    args += ["--batch-size", "8", "--eval-batches", "0", "--checkpoint-every", "10000", "--cache", str(cache)]
    if processes == 1:
        cmd = [sys.executable, "-m", "vlamix", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        cmd += ["-m", "vlamix", *args]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))[WARMUP:]
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "samples_per_s": sum(float(r["samples_per_s"]) for r in rows) / len(rows),
        "data_wait": sum(float(r["data_wait"]) for r in rows) / len(rows),
        "fetched_bytes": sum(int(r["fetched_bytes"]) for r in rows),
    }


def run(work: Path) -> list[Result]:
    layout = _layout(work)
    folder = work / "remote"
    manifest = json.loads((layout / "manifest.json").read_text())
    shards = [s for d in manifest["datasets"].values() for s in d["shards"]]
    layout_bytes = sum(s["bytes"] for s in shards)
    samples = sum(d["samples"] for d in manifest["datasets"].values())
    limit = int(layout_bytes * CACHE_SHARE)
    results = []
    with _python_http_server(layout.parent) as url:
        remote = _mixture(folder, "http", f"{url}/out/manifest.json", layout)
        local = _mixture(folder, "local", str(layout / "manifest.json"), layout)
        epoch = -(-samples // BATCH)
        t0 = time.perf_counter()
        ours, read = _fetched(remote, folder / "cache", limit, 1, epoch)
        took = time.perf_counter() - t0
        tenth = max(1, epoch // 10)
        blind, blind_read = _fetched(remote, folder / "cache", limit, 0, tenth)
        blind_epoch = blind * epoch / tenth
        results.append(
            Result(
                "remote",
                "bytes fetched per epoch with a cache of 10% of the layout (python -m http.server)",
                "x layout",
                ours / layout_bytes,
                blind_epoch / layout_bytes,
                "the same loader, shard-blind order (--shuffle-block 0)",
                lower_is_better=True,
                ceiling=2.0,
                note=f"{len(shards)} shards, {layout_bytes / 1e6:.0f} MB, {samples} samples in "
                f"{len(manifest['datasets'])} datasets; cache limit {limit / 1e6:.0f} MB; one epoch = "
                f"{read} samples in batches of {BATCH} ({took:.0f} s); shard-blind order measured over "
                f"{blind_read} samples and scaled to the epoch",
                extra={"fetched_bytes": ours, "layout_bytes": layout_bytes, "blind_bytes": blind_epoch},
            )
        )
        for processes in (1, 2):
            runs: dict[str, list[dict]] = {"http": [], "local": []}
            for _ in range(REPEATS):  # in turns, the best of each: a slow spell falls on both sides
                runs["http"].append(
                    _train(remote, folder / f"run_http_{processes}", processes, folder / "cache")
                )
                runs["local"].append(
                    _train(local, folder / f"run_local_{processes}", processes, folder / "cache")
                )
            over_http, in_place = (max(runs[k], key=lambda r: r["samples_per_s"]) for k in ("http", "local"))
            results.append(
                Result(
                    "remote",
                    f"training samples/s over HTTP through the cache, {processes} process(es)",
                    "samples/s",
                    over_http["samples_per_s"],
                    in_place["samples_per_s"],
                    "the same run from the local folder",
                    goal=0.9,
                    note=f"tiny, stage 1, global batch 8, 2 dataloader workers per process, cold cache, best of {REPEATS}; "
                    f"steps {WARMUP + 1}-{STEPS}; data wait {over_http['data_wait']:.1%} over HTTP, "
                    f"{in_place['data_wait']:.1%} local; {over_http['fetched_bytes'] / 1e6:.0f} MB fetched "
                    "in those steps",
                    extra={"http": over_http, "local": in_place},
                )
            )
    return results
