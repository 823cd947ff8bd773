"""The ingest's last step: every dataset's manifest entry (its index merged, its quarantine file written,
its accounting checked against the shards), then the dataset card and manifest.json, last (a reader
never sees a manifest whose shards are missing)."""

from __future__ import annotations

from vlamix.pipelines.datasets import kinds_of
from vlamix.pipelines.kinds import DatasetKind
from vlamix.shards.card import CARD, dataset_card
from vlamix.shards.layout import MANIFEST
from vlamix.shards.manifest import build_manifest
from vlamix.shards.workdir import WorkDir
from vlamix.sources.config import SourcesFile
from vlamix.tokenizers.vocab import LAYOUT_FILE

__all__ = ["write_index_and_manifest"]


def _overlaps(kinds: list[DatasetKind], work: WorkDir) -> list[dict]:
    """Pairs of datasets that hold the same content (the same files under two names, or one dataset
    copied into another): reported, not dropped, since a mixture may overlap on purpose (docs/design.md §8)."""
    found = []
    for unit in ("episode", "item"):
        hashes = {k.name: o[1] for k in kinds if (o := k.overlap(work)) is not None and o[0] == unit}
        names = sorted(hashes)
        found += [
            {"datasets": [a, b], "unit": unit, "count": len(hashes[a] & hashes[b])}
            for i, a in enumerate(names)
            for b in names[i + 1 :]
            if hashes[a] & hashes[b]
        ]
    return found


def write_index_and_manifest(
    work: WorkDir, sources: SourcesFile, failed: dict[str, dict] | None = None
) -> dict:
    """Index, quarantine files and manifest of every dataset of `sources`; `failed` (from
    pipelines/failed.py) lists the datasets that could not be read at all."""
    tok = work.tokenizer_set()
    kinds = kinds_of(sources)
    datasets = {kind.name: kind.manifest_entry(work) for kind in kinds}
    manifest = build_manifest(tok["path"], tok["sha256"], datasets)
    target = work.store.read_json(f"{tok['path']}/{LAYOUT_FILE}").get("backbone")
    if target:  # a set for a pretrained backbone's vocabulary says which (docs/design.md §20)
        keep = ("vocab", "tokenizer_sha256")
        manifest["tokenizer_set"]["backbone"] = {k: target[k] for k in keep}
    overlaps = _overlaps(kinds, work)
    if overlaps:
        manifest["cross_dataset_duplicates"] = overlaps
    if failed:
        manifest["failed"] = failed
    work.store.write_text(CARD, dataset_card(manifest))  # the dataset card, then the manifest: always last
    work.store.write_json(MANIFEST, manifest)
    return manifest
