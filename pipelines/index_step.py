"""The ingest's last step: per dataset, merge the index parts, write the quarantine file, check the
accounting against the shards, and write manifest.json last (a reader never sees a manifest whose shards
are missing).

The index keeps each sample's byte range and the crc32 of those bytes (computed by the shard writer), so
a reader that fetches one sample by its byte range can tell a damaged or replaced shard from the sample
it indexed (`shards/random_access.read_sample`). Indexes without the column (older layouts) stay
readable."""

from __future__ import annotations

import pyarrow.parquet as pq

from vlamix.pipelines.annotations import annotation_accounting, annotation_spans, span_samples
from vlamix.pipelines.outcomes import build_quarantine, robot_outcomes, web_outcomes
from vlamix.pipelines.steps import INDEX_SCHEMA
from vlamix.schemas.quarantine import QuarantineRecord
from vlamix.shards.card import CARD, dataset_card
from vlamix.shards.layout import EMBODIMENT_PATH, INDEX_PATH, MANIFEST, QUARANTINE_PATH, STATS_PATH, WORK_DIR
from vlamix.shards.manifest import Accounting, build_manifest
from vlamix.shards.store import Store
from vlamix.sources.config import SourcesFile
from vlamix.sources.readers import EPISODE_IDS
from vlamix.sources.web import COUNTERS

__all__ = ["write_index_and_manifest"]


def _file_ref(out: Store, rel: str) -> dict:
    return {"path": rel, "sha256": out.sha256(rel)}


def _merge_index(out: Store, name: str) -> str:
    parts = out.glob(f"{WORK_DIR}/index/{name}/*.parquet")
    rel = INDEX_PATH.format(dataset=name)
    with out.open_write(rel) as f, pq.ParquetWriter(f, INDEX_SCHEMA) as writer:
        for part in parts:  # one shard's rows at a time: never a whole dataset in memory
            with out.open(part) as p:
                writer.write_table(pq.read_table(p, schema=INDEX_SCHEMA))
    return rel


def _shard_docs(out: Store, name: str) -> list[dict]:
    return [out.read_json(p) for p in out.glob(f"{WORK_DIR}/shards/{name}/*.json")]


def _write_quarantine(out: Store, name: str, records: list[QuarantineRecord]) -> str:
    rel = QUARANTINE_PATH.format(dataset=name)
    ordered = sorted(records, key=lambda q: (q.episode if q.episode is not None else -1, q.source_file))
    out.write_text(rel, "".join(q.to_json() + "\n" for q in ordered))
    return rel


def _entry(
    out: Store,
    name: str,
    kind: str,
    emb_name: str,
    license: str | None,
    citation: str | None,
    stride: int,
    acc: Accounting,
    quarantine: str,
    stats_of: str | None,
) -> dict:
    acc.check(name)
    shards = _shard_docs(out, name)
    written = sum(s["samples"] for s in shards)
    if written != acc.frames_written:
        raise RuntimeError(
            f"{name}: shards hold {written} samples, {acc.frames_written} were built: re-run `--only build`"
        )
    entry = {
        "kind": kind,
        "embodiment": emb_name,
        "embodiment_spec": EMBODIMENT_PATH.format(name=emb_name),
        "license": license,
        "citation": citation,
        "stride": stride,
        "samples": written,
        "accounting": acc.__dict__,
        "quarantine": quarantine,
        "shards": [{k: s[k] for k in ("path", "samples", "bytes", "sha256")} for s in shards],
    }
    if stats_of is not None:
        entry["stats"] = _file_ref(out, STATS_PATH.format(dataset=stats_of))
        if stats_of != name:
            entry["normalized_with"] = stats_of  # HL / VI samples use their robot dataset's statistics
    if shards:
        entry["index"] = _file_ref(out, _merge_index(out, name))
    return entry


def _overlaps(hashes: dict[str, set[str]], unit: str) -> list[dict]:
    """Pairs of datasets that hold the same content (the same files under two names, or one dataset
    copied into another): reported, not dropped, since a mixture may overlap on purpose (DESIGN.md §8)."""
    names = sorted(hashes)
    return [
        {"datasets": [a, b], "unit": unit, "count": len(hashes[a] & hashes[b])}
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if hashes[a] & hashes[b]
    ]


def write_index_and_manifest(out: Store, sources: SourcesFile, failed: dict[str, dict] | None = None) -> dict:
    """Index, quarantine files and manifest of every dataset of `sources`; `failed` (from
    pipelines/failed.py) lists the datasets that could not be read at all."""
    tok = out.read_json(f"{WORK_DIR}/tokenizer_set.json")
    datasets = {}
    episode_hashes: dict[str, set[str]] = {}
    item_hashes: dict[str, set[str]] = {}
    for src in sources.datasets:
        kept, quarantined, dups = robot_outcomes(out, src.name)
        episode_hashes[src.name] = {e.episode_hash for e in kept}
        late = build_quarantine(out, src.name)  # episodes whose samples failed the gate at build
        kept = [e for e in kept if e.episode not in {q.episode for q in late}]
        quarantined = quarantined + late
        emb = sources.embodiment(src)
        written = sum(e.samples for e in kept)
        frames_kept = sum(e.frames for e in kept)
        acc = Accounting(
            unit="episode",
            read=len(kept) + len(quarantined) + len(dups),
            written=len(kept),
            quarantined=len(quarantined),
            duplicates=len(dups),
            frames_read=frames_kept + sum(q.frames for q in quarantined) + sum(e.frames for e in dups),
            frames_written=written,
            frames_filtered=frames_kept - written,
            frames_quarantined=sum(q.frames for q in quarantined),
            frames_duplicates=sum(e.frames for e in dups),
        )
        emb_rel = EMBODIMENT_PATH.format(name=emb.name)
        out.write_bytes(emb_rel, sources.embodiment_path(src).read_bytes())
        qrel = _write_quarantine(out, src.name, quarantined)
        datasets[src.name] = {
            "episode_id": EPISODE_IDS[src.format],
            **_entry(
                out,
                src.name,
                src.kind,
                emb.name,
                src.license,
                src.citation,
                src.stride,
                acc,
                qrel,
                src.name if kept else None,
            ),
        }
    for a in sources.annotations:
        robot = sources.robot(a.dataset)
        late = build_quarantine(out, a.name)
        late_eps = {q.episode for q in late}
        built = sum(
            span_samples(s, a.stride)
            for ep, group in annotation_spans(out, a.name).items()
            if ep not in late_eps
            for s in group
        )
        acc, bad = annotation_accounting(out, a, built, late)
        qrel = _write_quarantine(out, a.name, bad)
        has_stats = out.exists(STATS_PATH.format(dataset=robot.name))
        entry = _entry(
            out,
            a.name,
            a.kind,
            sources.embodiment(robot).name,
            a.license,
            a.citation,
            a.stride,
            acc,
            qrel,
            robot.name if has_stats else None,
        )
        datasets[a.name] = {**entry, "annotates": robot.name}
    for w in sources.web:
        kept, quarantined, dups = web_outcomes(out, w.name)
        item_hashes[w.name] = {i.content_hash for i in kept}
        acc = {
            "unit": "item",
            "read": len(kept) + len(quarantined) + len(dups),
            "written": len(kept),
            "quarantined": len(quarantined),
            "duplicates": len(dups),
            "turns_read": sum(i.turns for i in kept + dups),
            "turns_written": sum(i.turns for i in kept),
        }
        for counter in COUNTERS:  # left out or changed by a stated rule, never silently
            acc[counter] = sum(i.counts.get(counter, 0) for i in kept)
        shards = _shard_docs(out, w.name)
        if sum(s["samples"] for s in shards) != len(kept):
            raise RuntimeError(
                f"{w.name}: shards hold {sum(s['samples'] for s in shards)} samples, {len(kept)} items were kept: re-run `--only build`"
            )
        entry = {
            "kind": "WD",
            "license": w.license,
            "citation": w.citation,
            "samples": len(kept),
            "accounting": acc,
            "quarantine": _write_quarantine(out, w.name, quarantined),
            "shards": [{k: s[k] for k in ("path", "samples", "bytes", "sha256")} for s in shards],
        }
        if shards:
            entry["index"] = _file_ref(out, _merge_index(out, w.name))
        datasets[w.name] = entry
    manifest = build_manifest(tok["path"], tok["sha256"], datasets)
    overlaps = _overlaps(episode_hashes, "episode") + _overlaps(item_hashes, "item")
    if overlaps:
        manifest["cross_dataset_duplicates"] = overlaps
    if failed:
        manifest["failed"] = failed
    out.write_text(CARD, dataset_card(manifest))  # the dataset card, then the manifest: always last
    out.write_json(MANIFEST, manifest)
    return manifest
