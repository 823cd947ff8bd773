"""What each step left under `work/`, read back by the next step (engine-agnostic, driver side), from a layout anywhere."""

from __future__ import annotations

import json

from vlamix.pipelines.steps import Extracted
from vlamix.pipelines.web_steps import ItemExtracted
from vlamix.schemas.quarantine import QuarantineRecord
from vlamix.shards.layout import WORK_DIR
from vlamix.shards.store import Store

__all__ = ["build_quarantine", "read_jsonl", "robot_outcomes", "web_outcomes", "write_jsonl"]


def read_jsonl(store: Store, rel: str) -> list[dict]:
    try:
        text = store.read_text(rel)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"{store.url_of(rel)} is missing: run the earlier steps first (`vlamix ingest` without --only)"
        ) from e
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_jsonl(store: Store, rel: str, lines: list[str]) -> None:
    store.write_text(rel, "".join(line + "\n" for line in lines))


def robot_outcomes(
    store: Store, dataset: str
) -> tuple[list[Extracted], list[QuarantineRecord], list[Extracted]]:
    """(kept, quarantined, duplicates) of a robot dataset: exact duplicates by content hash keep the
    lowest episode index."""
    extracted = sorted(
        (Extracted(**d) for d in read_jsonl(store, f"{WORK_DIR}/extracted/{dataset}.jsonl")),
        key=lambda e: e.episode,
    )
    quarantined = [
        QuarantineRecord(**d) for d in read_jsonl(store, f"{WORK_DIR}/quarantined/{dataset}.jsonl")
    ]
    seen: dict[str, int] = {}
    kept, dups = [], []
    for e in extracted:
        (dups if e.episode_hash in seen else kept).append(e)
        seen.setdefault(e.episode_hash, e.episode)
    return kept, quarantined, dups


def web_outcomes(
    store: Store, name: str
) -> tuple[list[ItemExtracted], list[QuarantineRecord], list[ItemExtracted]]:
    """(kept, quarantined, duplicates) of a web dataset; duplicates are items whose image bytes an
    earlier item already has."""
    items = sorted(
        (ItemExtracted(**d) for d in read_jsonl(store, f"{WORK_DIR}/extracted/{name}.jsonl")),
        key=lambda i: i.item,
    )
    quarantined = [QuarantineRecord(**d) for d in read_jsonl(store, f"{WORK_DIR}/quarantined/{name}.jsonl")]
    seen: set[str] = set()
    kept, dups = [], []
    for it in items:
        (dups if it.content_hash in seen else kept).append(it)
        seen.add(it.content_hash)
    return kept, quarantined, dups


def build_quarantine(store: Store, dataset: str) -> list[QuarantineRecord]:
    """Episodes the build's sample gate quarantined for `dataset` (after extract counted them as kept)."""
    rels = store.glob(f"{WORK_DIR}/build_quarantine/{dataset}/*.json")
    return sorted((QuarantineRecord(**store.read_json(r)) for r in rels), key=lambda q: q.episode or 0)
