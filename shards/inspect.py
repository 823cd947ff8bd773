"""`vlamix inspect`: what a published layout holds (datasets, samples, bytes, versions, hashes,
accounting) and `--lint`: manifest against tars (counts, sha256, member names), index against tars,
hashes, the accounting proof of shards/accounting.py, and every file the manifest does not name
(shards/layout_owner.py)."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq

from vlamix.shards.accounting import accounting_problems
from vlamix.shards.layout_owner import unnamed_files
from vlamix.shards.manifest import read_manifest
from vlamix.shards.members import member_problem
from vlamix.shards.store import Store
from vlamix.tokenizers.vocab import LAYOUT_FILE

__all__ = ["lint_layout", "summarize_layout"]


class _Hashing:
    """A read-only stream that hashes and counts what passes through it."""

    def __init__(self, f):
        self.f, self.hash, self.size = f, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def summarize_layout(store: Store) -> dict:
    m = read_manifest(store)
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
        "root": store.url,
        "format": m["format"],
        "version": m["version"],
        "schema_versions": m["schema_versions"],
        "tokenizer_set": m["tokenizer_set"],
        "samples": sum(d["samples"] for d in datasets.values()),
        "bytes": sum(d["bytes"] for d in datasets.values()),
        "datasets": datasets,
        "failed": m.get("failed", {}),  # datasets the ingest could not read at all, with the reason
        "cross_dataset_duplicates": m.get("cross_dataset_duplicates", []),
    }


def _members(tar: tarfile.TarFile, name: str, shard: str, problems: list[str]):
    """The regular-file members of a shard; the first unsafe one (a link, a device, `../x`, `/abs`) is a
    problem, and nothing after it is counted."""
    for m in tar:
        problem = member_problem(m.name) if m.isfile() else "not a regular file"
        if problem:
            problems.append(f"{name}: shard {shard}: member {m.name[:200]!r} refused ({problem})")
            return
        yield m


def lint_layout(store: Store) -> list[str]:
    """Problems found: counts and sha256 of every shard, index rows against the tars (each row's byte
    range must hold exactly its sample), stats and tokenizer files present with their hashes, and no
    file the manifest does not name (under shards/, index/, stats/, tokenizers/, embodiments/,
    quarantine/: left by another ingest, `vlamix publish` skips them). Works on a local folder and on a
    URL alike (remote shards are streamed once each; a plain HTTP server cannot list its folders, so
    there unnamed files go unchecked)."""
    m = read_manifest(store)
    problems = [
        f"{rel}: a file the manifest does not name (left by another ingest?); `vlamix publish` skips it"
        for rel in unnamed_files(store, m) or []
    ]
    tok = m["tokenizer_set"]["path"]
    if not store.exists(f"{tok}/{LAYOUT_FILE}"):
        problems.append(f"tokenizer set {tok} is missing")
    for name, d in m["datasets"].items():
        for part in ("stats", "index"):
            ref = d.get(part)
            if ref and (not store.exists(ref["path"]) or store.sha256(ref["path"]) != ref["sha256"]):
                problems.append(f"{name}: {part} file {ref['path']} is missing or its sha256 differs")
        keys_in_tars = 0
        for s in d["shards"]:
            if store.size(s["path"]) is None:
                problems.append(f"{name}: shard {s['path']} is missing")
                continue
            with store.open(
                s["path"], stream=True
            ) as f:  # one streaming pass: hash, size and member keys together
                stream = _Hashing(f)
                try:
                    with tarfile.open(fileobj=stream, mode="r|") as tar:
                        n = len({m_.name.split(".", 1)[0] for m_ in _members(tar, name, s["path"], problems)})
                except tarfile.TarError as e:
                    problems.append(f"{name}: shard {s['path']} is not a readable tar ({e})")
                    continue
                stream.drain()
            if stream.size != s["bytes"] or stream.hash.hexdigest() != s["sha256"]:
                problems.append(f"{name}: shard {s['path']} differs from the manifest (bytes or sha256)")
            keys_in_tars += n
            if n != s["samples"]:
                problems.append(
                    f"{name}: shard {s['path']} holds {n} samples, the manifest says {s['samples']}"
                )
        problems += accounting_problems(store, name, d)
        if d.get("index") and store.exists(d["index"]["path"]):
            index = pq.read_table(
                pa.BufferReader(store.read_bytes(d["index"]["path"])),
                columns=["key", "shard", "offset", "length"],
            ).to_pylist()
            if len(index) != keys_in_tars:
                problems.append(f"{name}: the index has {len(index)} rows, the shards {keys_in_tars} samples")
            for row in index[:: max(1, len(index) // 20)]:  # a spread of rows: each byte range is its sample
                chunk = store.read_bytes(row["shard"], row["offset"], row["offset"] + row["length"])
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
