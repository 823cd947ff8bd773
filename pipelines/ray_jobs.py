"""The ingest steps as Ray Data jobs: local by default, a cluster by address. They run the same
per-element work as the Beam jobs (work_units.py), so both engines write the same bytes."""

from __future__ import annotations

import logging
import os
import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np

from vlamix.pipelines.options import ErrorPolicy
from vlamix.pipelines.work_units import extract_unit, spill_unit, write_spilled_group
from vlamix.shards.workdir import WorkDir

__all__ = ["ray_address_file", "ray_session", "run_build", "run_extract", "run_units"]

log = logging.getLogger("vlamix.ingest")


def ray_address_file() -> Path:
    """The file (`/tmp/ray/ray_current_cluster` by default) where `ray start` records the cluster that a
    plain `ray.init()` on this machine then joins, however long that cluster lives."""
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError:  # pragma: no cover - Ray before 2.4x kept it in _private
        from ray._private.utils import get_ray_address_file
    return Path(get_ray_address_file(None))


class ray_session:
    """`with ray_session(address, workers):` starts (or joins) Ray, and shuts down what it started. It
    leaves the machine's Ray address file as it found it (absent, or with its content), so a plain
    `ray.init()` after `vlamix ingest --engine ray` never aims at a cluster that is gone."""

    def __init__(self, address: str | None, workers: int):
        self.address, self.workers, self.started = address, workers, False
        self._address_file: tuple[Path, bytes | None] | None = None

    def __enter__(self):
        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if not ray.is_initialized():
            path = ray_address_file()
            self._address_file = (path, path.read_bytes() if path.is_file() else None)
            kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                # "local": always a fresh local instance, never a cluster some earlier `ray start` left behind
                ray.init(address="local", num_cpus=max(1, self.workers), **kwargs)
            self.started = True
        ctx = __import__("ray").data.DataContext.get_current()
        ctx.enable_progress_bars = False
        return self

    def __exit__(self, *exc) -> None:
        import ray

        if self.started:
            ray.shutdown()
        if self._address_file is not None:
            path, before = self._address_file
            now = path.read_bytes() if path.is_file() else None
            if now != before:  # something in the session recorded a cluster that ends with it
                if before is None:
                    path.unlink(missing_ok=True)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(before)


def _items(tasks: list) -> list[dict]:
    return [{"task": pickle.dumps(t)} for t in tasks]


def _node() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _extract_row(row: dict, policy: ErrorPolicy) -> list[dict]:
    extraction = extract_unit(pickle.loads(row["task"]), policy)
    node = _node()  # which cluster node did the work: reported, so a cluster run can be checked
    rows = [{"kind": "extracted", "record": pickle.dumps(r), "node": node} for r in extraction.results]
    return rows + [
        {"kind": "quarantined", "record": pickle.dumps(q), "node": node} for q in extraction.quarantined
    ]


def run_extract(tasks: list, out: str, policy: ErrorPolicy = "quarantine") -> dict:
    """Raw episodes and item batches -> frame / item Parquet (in Ray tasks); outcome lines per dataset."""
    import ray.data

    rows = (
        ray.data.from_items(_items(tasks), override_num_blocks=max(1, len(tasks)))
        .flat_map(lambda row: _extract_row(row, policy))
        .take_all()
    )
    grouped: dict[tuple[str, str], list] = defaultdict(list)
    for d in sorted({t.dataset for t in tasks}):
        grouped[("extracted", d)], grouped[("quarantined", d)] = [], []
    for row in rows:
        record = pickle.loads(row["record"])
        grouped[(row["kind"], record.dataset)].append(record)
    work = WorkDir.at(out)
    for (kind, dataset), records in sorted(grouped.items()):
        work.write_outcomes(kind, dataset, records)
    return {"tasks": len(tasks), "records": len(rows), "nodes": sorted({r["node"] for r in rows})}


def run_units(tasks: list) -> dict:
    """Units that each write their own summary file (the stats step's passes), in Ray tasks."""
    import ray.data

    rows = (
        ray.data.from_items(_items(tasks), override_num_blocks=max(1, len(tasks)))
        .map(lambda row: {"written": pickle.loads(row["task"]).run(), "node": _node()})
        .take_all()
    )
    return {"tasks": len(tasks), "nodes": sorted({r["node"] for r in rows})}


def _spill_rows(out: str, row: dict) -> list[dict]:
    files = spill_unit(out, pickle.loads(row["task"]))
    return [{"group": f"{dataset}|{shard}", "file": rel} for (dataset, shard), rel in files]


def _write_batch(out: str, batch: dict) -> dict:
    """One shard group (all spill files of one dataset|shard key) -> the shard on disk."""
    dataset, shard = str(batch["group"][0]).rsplit("|", 1)
    result = write_spilled_group(out, dataset, int(shard), [str(f) for f in batch["file"]])
    return {
        "path": np.array([result.path]),
        "samples": np.array([result.samples]),
        "node": np.array([_node()]),
    }


def run_build(tasks: list, out: str) -> dict:
    """Kept episodes and item files -> samples spilled per shard -> one group of file names per shard ->
    tar + index part + summary. Only file names go through Ray's shuffle."""
    import ray.data

    ds = ray.data.from_items(_items(tasks), override_num_blocks=max(1, len(tasks))).flat_map(
        lambda row: _spill_rows(out, row)
    )

    def write(batch: dict) -> dict:
        return _write_batch(out, batch)

    written = ds.groupby("group").map_groups(write, batch_format="numpy").take_all()
    return {
        "samples": int(sum(r["samples"] for r in written)),
        "nodes": sorted({str(r["node"]) for r in written}),
    }
