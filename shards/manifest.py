"""manifest.json: versions, hashes, per-shard counts and the accounting that proves nothing was lost."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from vlamix.schemas import RECORDS
from vlamix.shards.layout import FORMAT, FORMAT_VERSION, MANIFEST

__all__ = ["Accounting", "ItemAccounting", "build_manifest", "read_manifest", "write_json_atomic"]


@dataclass(frozen=True)
class Accounting:
    """Per dataset: read = written + quarantined + duplicates, and the same for frames, where frames
    also leave by the stride (`frames_filtered`)."""

    unit: str
    read: int
    written: int
    quarantined: int
    duplicates: int
    frames_read: int
    frames_written: int
    frames_filtered: int
    frames_quarantined: int
    frames_duplicates: int

    def to_json(self) -> dict:
        return asdict(self)

    def check(self, dataset: str) -> None:
        if self.read != self.written + self.quarantined + self.duplicates:
            raise AssertionError(f"{dataset}: {self.unit}s do not add up: {asdict(self)}")
        frames = self.frames_written + self.frames_filtered + self.frames_quarantined + self.frames_duplicates
        if self.frames_read != frames:
            raise AssertionError(f"{dataset}: frames do not add up: {asdict(self)}")


@dataclass(frozen=True)
class ItemAccounting:
    """Per web dataset: items read = written + quarantined + duplicates; turns of the items kept and of
    all items read; `rules`: what the readers left out or changed by a stated rule (boxes clipped,
    dropped or rescaled, crowd regions, empty texts), counted over the written items."""

    read: int
    written: int
    quarantined: int
    duplicates: int
    turns_read: int
    turns_written: int
    rules: dict[str, int]
    unit: str = "item"

    def to_json(self) -> dict:
        fixed = {k: v for k, v in asdict(self).items() if k != "rules"}
        return {**fixed, **self.rules}

    def check(self, dataset: str) -> None:
        if self.read != self.written + self.quarantined + self.duplicates:
            raise AssertionError(f"{dataset}: items do not add up: {self.to_json()}")


def build_manifest(tokenizer_path: str, tokenizer_sha256: str, datasets: dict[str, dict]) -> dict:
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "schema_versions": {r.name: r.version for r in RECORDS},
        "tokenizer_set": {"path": tokenizer_path, "sha256": tokenizer_sha256},
        "datasets": dict(sorted(datasets.items())),
    }


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_manifest(root) -> dict:
    """The manifest of a layout: a folder, a manifest path, or a URL (anything `Store` takes)."""
    from vlamix.shards.store import Store

    store = root if hasattr(root, "read_json") else Store(root)
    try:
        data = store.read_json(MANIFEST)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"{store.url_of(MANIFEST)}: no manifest (is {store.url} a vlamix layout? run `vlamix ingest` first)"
        ) from e
    if data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{store.url_of(MANIFEST)}: format {data.get('format')!r} v{data.get('version')} is not {FORMAT} v{FORMAT_VERSION}"
        )
    return data
