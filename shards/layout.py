"""Paths of the published layout (docs/design.md §5), named once. All are relative to the manifest's folder."""

from __future__ import annotations

__all__ = [
    "EMBODIMENT_PATH",
    "FORMAT",
    "FORMAT_VERSION",
    "FRAMES_DIR",
    "INDEX_PATH",
    "MANIFEST",
    "QUARANTINE_PATH",
    "REPORTS_DIR",
    "SHARD_PATH",
    "STATS_PATH",
    "TOKENIZERS_DIR",
    "WORK_DIR",
    "shard_path",
]

FORMAT = "vlamix"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARD_PATH = "shards/{dataset}/{dataset}-{shard:06d}.tar"
INDEX_PATH = "index/{dataset}.parquet"
STATS_PATH = "stats/{dataset}.json"
TOKENIZERS_DIR = "tokenizers"
EMBODIMENT_PATH = "embodiments/{name}.yaml"
QUARANTINE_PATH = "quarantine/{dataset}.jsonl"
REPORTS_DIR = "reports"
WORK_DIR = "work"  # intermediate results of the steps (frame Parquet, per-step outcomes)
FRAMES_DIR = WORK_DIR + "/frames/{dataset}"


def shard_path(dataset: str, shard: int) -> str:
    return SHARD_PATH.format(dataset=dataset, shard=shard)
