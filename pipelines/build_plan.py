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

from vlamix.pipelines.spill import SPILL_DIR
from vlamix.pipelines.steps import index_part_file
from vlamix.shards.layout import WORK_DIR, shard_path
from vlamix.shards.store import Store
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


def _plan_path(dataset: str) -> str:
    return f"{WORK_DIR}/build/{dataset}.json"


def _summary(dataset: str, n: int) -> str:
    return f"{WORK_DIR}/shards/{dataset}/{n:06d}.json"


def _finished(out: Store, dataset: str, shards: int) -> frozenset[int]:
    done = set()
    for n in range(shards):
        if not (out.exists(_summary(dataset, n)) and out.exists(index_part_file(dataset, n))):
            continue
        if out.read_json(_summary(dataset, n))["bytes"] == out.size(shard_path(dataset, n)):
            done.add(n)
    return frozenset(done)


def _clean(out: Store, dataset: str) -> None:
    for folder in (
        f"shards/{dataset}",
        f"{WORK_DIR}/shards/{dataset}",
        f"{WORK_DIR}/index/{dataset}",
        f"{SPILL_DIR}/{dataset}",
        f"{WORK_DIR}/build_quarantine/{dataset}",
    ):
        out.rmtree(folder)


def prepare_dataset(out: Store, dataset: str, fp: str, shards: int, fresh: bool) -> frozenset[int]:
    """The shards of `dataset` already built by an interrupted run with the same plan (none when the
    plan changed or `fresh`); everything else of the dataset's build is cleared."""
    plan = _plan_path(dataset)
    if not fresh and out.exists(plan) and out.read_json(plan).get("fingerprint") == fp:
        done = _finished(out, dataset, shards)
        for n in range(shards):
            if n not in done:  # a half-written shard of the killed run: its tar, summary and index part go
                for rel in (shard_path(dataset, n), _summary(dataset, n), index_part_file(dataset, n)):
                    out.rm(rel)
        out.rmtree(f"{SPILL_DIR}/{dataset}")
        if done:
            log.info("build: %s: resuming, %d of %d shards already built", dataset, len(done), shards)
        return done
    _clean(out, dataset)
    out.write_text(plan, json.dumps({"fingerprint": fp, "shards": shards}, sort_keys=True))
    return frozenset()


def remove_stray_temps(out: Store) -> int:
    """Delete the temp files (`.<name>.tmp*`, `.tok-*`) a killed run left under a local layout; their
    count. (Objects on a store appear whole or not at all: nothing to remove there.)"""
    root = out.local()
    if root is None or not root.is_dir():
        return 0
    n = 0
    for path in itertools.chain(root.rglob(".*.tmp*"), root.rglob(".tok-*"), root.rglob(".fetch-*")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        n += 1
    if n:
        log.info("removed %d temp files an interrupted run left in %s", n, root)
    return n


def samples_per_shard(target_bytes: int, entries: list[dict]) -> int:
    """Samples per shard so that shards come out near `target_bytes`, from a few entries measured as
    they would be written."""
    if not entries:
        return 1
    sizes = entry_sizes(entries)
    return max(1, int(target_bytes // (sum(sizes) / len(sizes))))
