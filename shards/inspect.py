"""`vlamix inspect`: what a published layout holds (datasets, samples, bytes, versions, hashes,
accounting) and `--lint`: manifest against tars, index against tars, hashes."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pyarrow.parquet as pq

from vlamix.shards.manifest import read_manifest

__all__ = ["lint_layout", "summarize_layout"]


def summarize_layout(root: Path) -> dict:
    m = read_manifest(root)
    datasets = {}
    for name, d in m["datasets"].items():
        datasets[name] = {
            "kind": d["kind"],
            "embodiment": d.get("embodiment"),
            "samples": sum(s["samples"] for s in d["shards"]),
            "shards": len(d["shards"]),
            "bytes": sum(s["bytes"] for s in d["shards"]),
            "accounting": d["accounting"],
            "license": d.get("license"),
        }
    return {
        "root": str(root),
        "format": m["format"],
        "version": m["version"],
        "schema_versions": m["schema_versions"],
        "tokenizer_set": m["tokenizer_set"],
        "samples": sum(d["samples"] for d in datasets.values()),
        "bytes": sum(d["bytes"] for d in datasets.values()),
        "datasets": datasets,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def lint_layout(root: Path) -> list[str]:
    """Problems found: counts and sha256 of every shard, index rows against the tars (each row's byte
    range must hold exactly its sample), stats and tokenizer files present with their hashes."""
    m = read_manifest(root)
    problems = []
    tok = root / m["tokenizer_set"]["path"]
    if not tok.is_dir():
        problems.append(f"tokenizer set {m['tokenizer_set']['path']} is missing")
    for name, d in m["datasets"].items():
        for part in ("stats", "index"):
            ref = d.get(part)
            if ref and (not (root / ref["path"]).is_file() or _sha256(root / ref["path"]) != ref["sha256"]):
                problems.append(f"{name}: {part} file {ref['path']} is missing or its sha256 differs")
        keys_in_tars = 0
        for s in d["shards"]:
            path = root / s["path"]
            if not path.is_file():
                problems.append(f"{name}: shard {s['path']} is missing")
                continue
            if path.stat().st_size != s["bytes"] or _sha256(path) != s["sha256"]:
                problems.append(f"{name}: shard {s['path']} differs from the manifest (bytes or sha256)")
            with tarfile.open(path) as tar:
                n = len({m_.name.split(".", 1)[0] for m_ in tar.getmembers() if m_.isfile()})
            keys_in_tars += n
            if n != s["samples"]:
                problems.append(
                    f"{name}: shard {s['path']} holds {n} samples, the manifest says {s['samples']}"
                )
        if d.get("index") and (root / d["index"]["path"]).is_file():
            index = pq.read_table(
                root / d["index"]["path"], columns=["key", "shard", "offset", "length"]
            ).to_pylist()
            if len(index) != keys_in_tars:
                problems.append(f"{name}: the index has {len(index)} rows, the shards {keys_in_tars} samples")
            for row in index[:: max(1, len(index) // 20)]:  # a spread of rows: each byte range is its sample
                with (root / row["shard"]).open("rb") as f:
                    f.seek(row["offset"])
                    chunk = f.read(row["length"])
                try:
                    with tarfile.open(fileobj=io.BytesIO(chunk)) as t:
                        names = t.getnames()
                except tarfile.TarError:
                    names = []
                if not names or any(not n.startswith(row["key"] + ".") for n in names):
                    problems.append(
                        f"{name}: index row {row['key']} does not address its sample in {row['shard']}"
                    )
                    break
    return problems
