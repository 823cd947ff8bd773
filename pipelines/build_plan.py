"""Resuming the build after a kill, and sizing shards.

Each dataset's build has a plan (`work/build/<dataset>.json`): a fingerprint of everything its shards
depend on. A re-run with the same fingerprint keeps the shards the killed run finished (a shard is finished
when its summary, written after its tar and index part, exists and agrees with the tar on disk) and builds
only the rest; any other fingerprint starts the dataset over. Temp files a kill left behind are removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING

from vlamix.pipelines.units import BuildUnit
from vlamix.shards.assign import shard_count
from vlamix.shards.layout import shard_path
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir
from vlamix.shards.writer import entry_sizes

if TYPE_CHECKING:
    from vlamix.pipelines.options import IngestOptions

__all__ = [
    "fingerprint",
    "plan_units",
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


def _finished(out: Store, dataset: str, shards: int) -> frozenset[int]:
    done = set()
    for n in range(shards):
        if not (out.exists(WorkDir.shard_summary(dataset, n)) and out.exists(WorkDir.index_part(dataset, n))):
            continue
        if out.read_json(WorkDir.shard_summary(dataset, n))["bytes"] == out.size(shard_path(dataset, n)):
            done.add(n)
    return frozenset(done)


def _clean(out: Store, dataset: str) -> None:
    for folder in (
        f"shards/{dataset}",
        WorkDir.shard_summary(dataset),
        WorkDir.index_part(dataset),
        WorkDir.spill(dataset),
        WorkDir.build_quarantine(dataset),
    ):
        out.rmtree(folder)


def prepare_dataset(out: Store, dataset: str, fp: str, shards: int, fresh: bool) -> frozenset[int]:
    """The shards of `dataset` already built by an interrupted run with the same plan (none when the
    plan changed or `fresh`); everything else of the dataset's build is cleared."""
    plan = WorkDir.build_plan(dataset)
    if not fresh and out.exists(plan) and out.read_json(plan).get("fingerprint") == fp:
        done = _finished(out, dataset, shards)
        for n in range(shards):
            if n not in done:  # a half-written shard of the killed run: its tar, summary and index part go
                for rel in (
                    shard_path(dataset, n),
                    WorkDir.shard_summary(dataset, n),
                    WorkDir.index_part(dataset, n),
                ):
                    out.rm(rel)
        out.rmtree(WorkDir.spill(dataset))
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


def plan_units(
    opts: IngestOptions, name: str, total: int, make: Callable[[int], list[BuildUnit]], **inputs
) -> list[BuildUnit]:
    """One dataset's build units for `total` samples, sized (samples per shard, or a byte target
    measured on a few built samples) and resumed: shards an interrupted run with the same inputs
    finished are skipped. `make(n)` gives the units for `n` shards; `inputs` is what the shards depend on."""
    per_shard = opts.samples_per_shard
    if opts.shard_bytes is not None:
        probe = make(1)[0]
        entries = [s.members() for _, _, s in itertools.islice(probe.samples(), ESTIMATE_SAMPLES)]
        per_shard = samples_per_shard(opts.shard_bytes, entries)
        log.info("build: %s: %d samples per shard for %d-byte shards", name, per_shard, opts.shard_bytes)
    n = shard_count(total, per_shard)
    tok = opts.work.tokenizer_set()["sha256"]
    fp = fingerprint(dataset=name, seed=opts.seed, shards=n, tokenizers=tok, **inputs)
    done = prepare_dataset(opts.store, name, fp, n, opts.fresh)
    if len(done) == n:
        return []
    return [dataclasses.replace(u, skip=done) for u in make(n)]
