"""What each step left under `work/`, read back by the next step (engine-agnostic, driver side)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from vlamix.pipelines.steps import Extracted
from vlamix.pipelines.web_steps import ItemExtracted
from vlamix.schemas.quarantine import QuarantineRecord
from vlamix.shards.layout import WORK_DIR

__all__ = ["read_jsonl", "robot_outcomes", "web_outcomes", "write_jsonl"]


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run the earlier steps first (`vlamix ingest` without --only)"
        )
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.replace(path)


def robot_outcomes(
    out: Path, dataset: str
) -> tuple[list[Extracted], list[QuarantineRecord], list[Extracted]]:
    """(kept, quarantined, duplicates) of a robot dataset: exact duplicates by content hash keep the
    lowest episode index."""
    work = out / WORK_DIR
    extracted = sorted(
        (Extracted(**d) for d in read_jsonl(work / "extracted" / f"{dataset}.jsonl")), key=lambda e: e.episode
    )
    quarantined = [QuarantineRecord(**d) for d in read_jsonl(work / "quarantined" / f"{dataset}.jsonl")]
    seen: dict[str, int] = {}
    kept, dups = [], []
    for e in extracted:
        (dups if e.episode_hash in seen else kept).append(e)
        seen.setdefault(e.episode_hash, e.episode)
    return kept, quarantined, dups


def web_outcomes(
    out: Path, name: str
) -> tuple[list[ItemExtracted], list[QuarantineRecord], list[ItemExtracted]]:
    """(kept, quarantined, duplicates) of a web dataset; duplicates are items whose image bytes an
    earlier item already has."""
    work = out / WORK_DIR
    items = sorted(
        (ItemExtracted(**d) for d in read_jsonl(work / "extracted" / f"{name}.jsonl")), key=lambda i: i.item
    )
    quarantined = [QuarantineRecord(**d) for d in read_jsonl(work / "quarantined" / f"{name}.jsonl")]
    seen: set[str] = set()
    kept, dups = [], []
    for it in items:
        (dups if it.content_hash in seen else kept).append(it)
        seen.add(it.content_hash)
    return kept, quarantined, dups
