"""What `vlamix view` reads of a layout, at a path or a URL, and how: the manifest, a dataset's index and
quarantine records through the layout's `Store` (shards/store.py), and samples through the trainer's own
`SampleSource` (trainer/sample_source.py): read in place from a local layout, one range read per sample;
from whole, verified shard copies in the shard cache (shards/shard_cache.py) for a layout at a URL.

Nothing read is trusted: a manifest entry, index or quarantine line of the wrong shape is a `ViewError`
naming the file and the record."""

from __future__ import annotations

import difflib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlamix.mixtures.sampler import Draw
from vlamix.shards.manifest import read_manifest
from vlamix.shards.store import Store, store_for
from vlamix.trainer.sample_source import SampleSource, cache_for

__all__ = ["INDEX_COLUMNS", "READ_BATCH", "IndexRow", "ViewError", "ViewLayout", "open_layout", "read_npy"]

READ_BATCH = 64  # samples read (and shards pinned) at a time
INDEX_COLUMNS = (
    "key",
    "shard",
    "offset",
    "length",
    "episode",
    "frame",
    "split",
    "success",
    "duration",
    "crc32",
    "environment",
)
OPTIONAL_COLUMNS = ("crc32", "environment")  # layouts written before these columns have none
ROBOT_KINDS = ("MM", "ME", "CE", "HL", "VI")


class ViewError(ValueError):
    """A layout, dataset or record `vlamix view` cannot show: one line naming the file and what to do."""


@dataclass(frozen=True)
class IndexRow:
    """One sample of a dataset's index: where its bytes are and what mixtures select on."""

    key: str
    shard: str
    offset: int
    length: int
    episode: int | None
    frame: int | None
    split: str
    success: bool | None
    duration: float | None
    crc32: int | None
    environment: str | None = None  # where the episode was recorded (None: not said, or an older index)


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


@dataclass
class ViewLayout:
    """An open layout: its Store, manifest, and the SampleSource its samples are read through."""

    where: str
    store: Store
    manifest: dict
    source: SampleSource
    _indexes: dict[str, list[IndexRow]] = field(default_factory=dict)

    def entry(self, dataset: str) -> dict:
        """The manifest's entry of `dataset` (a failed or unknown name is an error that lists the others)."""
        datasets = self.manifest.get("datasets")
        if not isinstance(datasets, dict):
            raise ViewError(f"{self.store.url_of('manifest.json')}: `datasets` is not a mapping")
        failed = self.manifest.get("failed", {})
        if dataset in failed:
            reason = failed[dataset].get("reason") if isinstance(failed[dataset], dict) else failed[dataset]
            raise ViewError(
                f"{self.store.url}: dataset {dataset!r} failed at ingest ({reason}): it has no samples"
            )
        if dataset not in datasets:
            raise ViewError(
                f"{self.store.url}: no dataset {dataset!r}; {_did_you_mean(dataset, sorted(datasets))}"
                f"the layout has {', '.join(sorted(datasets))}"
            )
        entry = datasets[dataset]
        if not isinstance(entry, dict) or entry.get("kind") not in (*ROBOT_KINDS, "WD"):
            raise ViewError(f"{self.store.url_of('manifest.json')}: dataset {dataset!r} has no known kind")
        return entry

    def index_rows(self, dataset: str) -> list[IndexRow]:
        """Every sample of `dataset` as its index lists it (read once)."""
        if dataset not in self._indexes:
            self._indexes[dataset] = self._read_index(dataset)
        return self._indexes[dataset]

    def _read_index(self, dataset: str) -> list[IndexRow]:
        ref = self.entry(dataset).get("index")
        if not isinstance(ref, dict) or not isinstance(ref.get("path"), str):
            raise ViewError(f"{self.store.url_of('manifest.json')}: dataset {dataset!r} names no index file")
        rel = ref["path"]
        try:
            table = pq.read_table(pa.BufferReader(self.store.read_bytes(rel)))
        except (OSError, pa.ArrowException) as e:
            raise ViewError(f"{self.store.url_of(rel)}: cannot read the index ({e})") from e
        missing = [c for c in INDEX_COLUMNS if c not in table.column_names and c not in OPTIONAL_COLUMNS]
        if missing:
            raise ViewError(
                f"{self.store.url_of(rel)}: the index lacks the columns {missing}; re-run the ingest"
            )
        columns = [c for c in INDEX_COLUMNS if c in table.column_names]
        rows = []
        for i, r in enumerate(table.select(columns).to_pylist()):
            if not isinstance(r["key"], str) or not isinstance(r["shard"], str):
                raise ViewError(f"{self.store.url_of(rel)}: row {i} has no key or shard")
            if not all(isinstance(r[c], int) for c in ("offset", "length")):
                raise ViewError(f"{self.store.url_of(rel)}: row {i} ({r['key']}) has no byte range")
            rows.append(IndexRow(**{c: r.get(c) for c in INDEX_COLUMNS}))
        return rows

    def quarantine(self, dataset: str) -> list[dict]:
        """The dataset's quarantine records (file, episode or item, frame, field, reason), in file order."""
        rel = self.entry(dataset).get("quarantine")
        if not isinstance(rel, str) or not self.store.exists(rel):
            return []
        out = []
        for n, line in enumerate(self.store.read_text(rel).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ViewError(f"{self.store.url_of(rel)}: line {n} is not JSON ({e.msg})") from e
            if not isinstance(record, dict) or not isinstance(record.get("reason"), str):
                raise ViewError(f"{self.store.url_of(rel)}: line {n} is not a quarantine record (no reason)")
            out.append(record)
        return out

    def read(self, dataset: str, rows: list[IndexRow]) -> Iterator[tuple[IndexRow, dict[str, bytes]]]:
        """Each row's sample members (crc32 and member names checked), `READ_BATCH` at a time."""
        for start in range(0, len(rows), READ_BATCH):
            batch = rows[start : start + READ_BATCH]
            draws = [
                Draw(start + i, dataset, dataset, self.where, r.key, r.shard, r.offset, r.length, 0, r.crc32)
                for i, r in enumerate(batch)
            ]
            yield from zip(batch, self.source.read(draws), strict=True)

    def close(self) -> None:
        self.source.close()


def open_layout(where: str, cache: Path | None = None) -> ViewLayout:
    """The layout at `where` (a folder, its manifest, or a URL of either). A layout at a URL is read
    through the shard cache at `cache` (default: the trainer's, `$VLAMIX_CACHE/shards`)."""
    try:
        store = store_for(where)
        manifest = read_manifest(store)
    except (OSError, ValueError) as e:
        raise ViewError(str(e)) from e
    manifests = {where: manifest}
    return ViewLayout(where, store, manifest, SampleSource(manifests, cache_for(manifests, cache, None)))


def read_npy(sample: dict[str, bytes], name: str, where: str) -> np.ndarray | None:
    """A `.npy` member as an array, or None when the sample has no such member."""
    if name not in sample:
        return None
    try:
        return np.load(io.BytesIO(sample[name]), allow_pickle=False)
    except ValueError as e:
        raise ViewError(f"{where}: member {name} is not a numpy array ({e})") from e
