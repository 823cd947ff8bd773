"""`vlamix inspect --lint`'s proof that nothing was lost, per dataset, from the published files alone:
episodes (or items, annotations) and frames read = written + quarantined + deduplicated (+ frames the
stride or idle filter left out); the quarantine file holds one reasoned line per quarantined unit; the
shards hold one sample per frame written (per item for web data); the index holds every written episode."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from vlamix.shards.store import Store

__all__ = ["accounting_problems"]

FRAMES = ("frames_written", "frames_quarantined", "frames_duplicates", "frames_filtered")


def accounting_problems(store: Store, name: str, d: dict) -> list[str]:
    """What does not add up for dataset `name` (its manifest entry `d`)."""
    acc = d["accounting"]
    unit = acc["unit"]
    problems = []
    if acc["read"] != acc["written"] + acc["quarantined"] + acc["duplicates"]:
        problems.append(
            f"{name}: {unit}s read {acc['read']} != written {acc['written']} + quarantined "
            f"{acc['quarantined']} + duplicates {acc['duplicates']}"
        )
    if "frames_read" in acc and acc["frames_read"] != sum(acc[k] for k in FRAMES):
        problems.append(
            f"{name}: frames read {acc['frames_read']} != "
            + " + ".join(f"{k.removeprefix('frames_')} {acc[k]}" for k in FRAMES)
        )
    per_sample = acc["written"] if unit == "item" else acc.get("frames_written")
    if per_sample is not None and d["samples"] != per_sample:
        what = "items written" if unit == "item" else "frames written"
        problems.append(f"{name}: the shards hold {d['samples']} samples, the accounting {per_sample} {what}")
    problems += _quarantine_problems(store, name, d)
    if unit == "episode" and d.get("index") and store.exists(d["index"]["path"]):
        table = pq.read_table(pa.BufferReader(store.read_bytes(d["index"]["path"])), columns=["episode"])
        episodes = len(set(table.column("episode").to_pylist()))
        if episodes != acc["written"]:
            problems.append(
                f"{name}: the index holds {episodes} episodes, the accounting {acc['written']} written"
            )
    return problems


def _quarantine_problems(store: Store, name: str, d: dict) -> list[str]:
    acc, rel = d["accounting"], d.get("quarantine")
    if not rel:
        return [f"{name}: the manifest names no quarantine file"] if acc["quarantined"] else []
    if not store.exists(rel):
        return [f"{name}: quarantine file {rel} is missing"]
    lines = [line for line in store.read_text(rel).splitlines() if line.strip()]
    problems = []
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            return [f"{name}: {rel} line {i + 1} is not JSON"]
        if not rec.get("reason") or not rec.get("source_file"):
            return [f"{name}: {rel} line {i + 1} names no source_file or reason"]
    if len(lines) != acc["quarantined"]:
        problems.append(
            f"{name}: {rel} holds {len(lines)} records, the accounting {acc['quarantined']} quarantined"
        )
    return problems
