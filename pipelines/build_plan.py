"""Resuming the build after a kill, and sizing shards.

Each dataset's build has a plan (`work/build/<dataset>.json`): a fingerprint of everything its shards
depend on. A re-run with the same fingerprint keeps the shards the killed run finished (a shard is finished
when its summary, written after its tar and index part, exists and agrees with the tar on disk) and builds
only the rest; any other fingerprint starts the dataset over. Temp files a kill left behind are removed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import shutil
from pathlib import Path

from vlamix.pipelines.spill import SPILL_DIR
from vlamix.pipelines.steps import index_part_file
from vlamix.shards.layout import WORK_DIR, shard_path
from vlamix.shards.writer import entry_sizes

__all__ = [
    "fingerprint",
    "prepare_dataset",
    "remove_stray_temps",
    "samples_per_shard",
]

log = logging.getLogger("vlamix.ingest")
BUILD_VERSION = 1  # bump when the build's output changes for the same inputs
ESTIMATE_SAMPLES = 32  # samples built ahead to measure a dataset's bytes per sample


def fingerprint(**parts) -> str:
    """sha256 of the canonical JSON of `parts` (anything without a JSON form by its repr)."""
    doc = json.dumps({"build_version": BUILD_VERSION, **parts}, sort_keys=True, default=repr)
    return hashlib.sha256(doc.encode()).hexdigest()


def _plan_path(out: Path, dataset: str) -> Path:
    return out / WORK_DIR / "build" / f"{dataset}.json"


def _finished(out: Path, dataset: str, shards: int) -> frozenset[int]:
    done = set()
    for n in range(shards):
        summary = out / WORK_DIR / "shards" / dataset / f"{n:06d}.json"
        tar = out / shard_path(dataset, n)
        if not (summary.is_file() and tar.is_file() and (out / index_part_file(dataset, n)).is_file()):
            continue
        if json.loads(summary.read_text())["bytes"] == tar.stat().st_size:
            done.add(n)
    return frozenset(done)


def _clean(out: Path, dataset: str) -> None:
    for folder in (
        out / "shards" / dataset,
        out / WORK_DIR / "shards" / dataset,
        out / WORK_DIR / "index" / dataset,
        out / SPILL_DIR / dataset,
    ):
        shutil.rmtree(folder, ignore_errors=True)


def prepare_dataset(out: Path, dataset: str, fp: str, shards: int, fresh: bool) -> frozenset[int]:
    """The shards of `dataset` already built by an interrupted run with the same plan (none when the
    plan changed or `fresh`); everything else of the dataset's build is cleared."""
    path = _plan_path(out, dataset)
    if not fresh and path.is_file() and json.loads(path.read_text()).get("fingerprint") == fp:
        done = _finished(out, dataset, shards)
        for n in range(shards):
            if n not in done:  # a half-written shard of the killed run: its tar, summary and index part go
                (out / shard_path(dataset, n)).unlink(missing_ok=True)
                (out / WORK_DIR / "shards" / dataset / f"{n:06d}.json").unlink(missing_ok=True)
                (out / index_part_file(dataset, n)).unlink(missing_ok=True)
        shutil.rmtree(out / SPILL_DIR / dataset, ignore_errors=True)
        if done:
            log.info("build: %s: resuming, %d of %d shards already built", dataset, len(done), shards)
        return done
    _clean(out, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"fingerprint": fp, "shards": shards}, sort_keys=True))
    tmp.replace(path)
    return frozenset()


def remove_stray_temps(out: Path) -> int:
    """Delete the temp files (`.<name>.tmp*`, `.tok-*`) a killed run left under the layout; their count."""
    n = 0
    for path in itertools.chain(out.rglob(".*.tmp*"), out.rglob(".tok-*")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        n += 1
    if n:
        log.info("removed %d temp files an interrupted run left in %s", n, out)
    return n


def samples_per_shard(target_bytes: int, entries: list[dict]) -> int:
    """Samples per shard so that shards come out near `target_bytes`, from a few entries measured as
    they would be written."""
    if not entries:
        return 1
    sizes = entry_sizes(entries)
    return max(1, int(target_bytes // (sum(sizes) / len(sizes))))
