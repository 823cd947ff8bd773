"""Training from a layout at a URL through the shard cache: Python's own `python -m http.server` (no
Range support) and the Range-capable test server both train, and the samples of every step are those of
the same run from the local folder; the cache fills with verified shards and a second run reads no shard
from the server; a shard whose bytes changed on the server stops the run with one line naming it; a
cache limit smaller than the layout keeps training correct and the fetched bytes are reported."""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import pytest
from conftest import REPO
from servers import Faults, http_server, python_http_server

from vlamix.shards.shard_cache import CachedLayout, ShardCache
from vlamix.shards.store import Store
from vlamix.trainer.train import TrainOptions, train

STEPS = 3


def _mixture(folder: Path, manifest: str) -> Path:
    text = (REPO / "mixtures" / "pi05_pretrain.yaml").read_text().replace("../out/manifest.json", manifest)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mix.yaml").write_text(text)
    return folder / "mix.yaml"


def _train(mixture: Path, out: Path, **kw) -> tuple[list[dict], list[list[str]]]:
    opts = dict(steps=STEPS, batch_size=8, workers=0, eval_batches=0, checkpoint_every=100, log_every=100)
    train(TrainOptions("pretrain", mixture, out, log_samples=True, **(opts | kw)), echo=lambda _: None)
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    keys = [json.loads(line)["keys"] for line in (out / "samples.jsonl").read_text().splitlines()]
    return rows, keys


def _cached_tars(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob("*/shards/**/*.tar"))


def _shards(layout: Path) -> dict[str, dict]:
    manifest = json.loads((layout / "manifest.json").read_text())
    return {s["path"]: s for d in manifest["datasets"].values() for s in d["shards"]}


@pytest.fixture(scope="module")
def local_keys(bundled, tmp_path_factory) -> list[list[str]]:
    """The sample keys of each step trained from the layout's folder (read in place, no cache)."""
    root = tmp_path_factory.mktemp("local_run")
    rows, keys = _train(_mixture(root / "mix", str(bundled / "manifest.json")), root / "run")
    assert all(r["fetched_bytes"] == "0" and r["cache_hit_rate"] == "" for r in rows)  # read in place
    return keys


@pytest.mark.slow
@pytest.mark.parametrize("server", ["python -m http.server", "range server"])
def test_trains_through_the_cache_and_a_second_run_reads_no_shard(server, bundled, local_keys, tmp_path):
    faults = Faults()
    serve = python_http_server(bundled.parent) if server == "python -m http.server" else None
    with serve or http_server(bundled.parent, faults) as handle:
        url = handle.url if serve else handle
        mixture = _mixture(tmp_path / "mix", f"{url}/{bundled.name}/manifest.json")
        rows, keys = _train(mixture, tmp_path / "run1", cache=tmp_path / "cache")
        assert keys == local_keys  # the same samples, step by step, as from the folder
        fetched = sum(int(r["fetched_bytes"]) for r in rows)
        tars = _cached_tars(tmp_path / "cache")
        shards = {s["sha256"]: s for s in _shards(bundled).values()}
        assert tars and fetched == sum(p.stat().st_size for p in tars)
        for p in tars:  # every cached shard is whole and is the manifest's
            assert hashlib.sha256(p.read_bytes()).hexdigest() in shards
        assert rows[0]["fetched_bytes/rank0"] == rows[0]["fetched_bytes"] != "0"
        before = handle.gets() if serve else dict(faults.requests)

        rows2, keys2 = _train(mixture, tmp_path / "run2", cache=tmp_path / "cache")
        assert keys2 == local_keys
        assert all(r["fetched_bytes"] == "0" and float(r["cache_hit_rate"]) == 1.0 for r in rows2)
        if serve:  # the second run asked the server for manifests and indexes, never for a shard
            new = handle.gets()[len(before) :]
            assert new and not [p for p in new if "/shards/" in p], new
        else:  # one HEAD per shard (the mixture's size check), no read
            shard_paths = {p for p in faults.requests if "/shards/" in p}
            assert all(faults.requests[p] - before.get(p, 0) == 1 for p in shard_paths)


@pytest.mark.slow
def test_a_shard_changed_on_the_server_fails_its_sha256_with_one_line(bundled, tmp_path):
    layout = tmp_path / "served" / "out"
    shutil.copytree(bundled, layout, ignore=shutil.ignore_patterns("work"))
    for rel in _shards(layout):  # same size (the mixture's size check passes), other bytes
        with (layout / rel).open("r+b") as f:
            f.seek(700)
            byte = f.read(1)
            f.seek(700)
            f.write(bytes([byte[0] ^ 0xFF]))
    with python_http_server(layout.parent) as server:
        mixture = _mixture(tmp_path / "mix", f"{server.url}/out/manifest.json")
        with pytest.raises(OSError) as err:
            _train(mixture, tmp_path / "run", cache=tmp_path / "cache")
    message = str(err.value)
    assert "\n" not in message and "sha256" in message and "re-publish" in message
    assert f"{server.url}/out/shards/" in message and ".tar" in message
    assert not _cached_tars(tmp_path / "cache")  # nothing unverified is kept


@pytest.mark.slow
def test_a_cache_smaller_than_the_layout_evicts_and_keeps_the_samples(bundled, local_keys, tmp_path):
    shards = _shards(bundled)
    limit = sum(s["bytes"] for s in shards.values()) // 3
    with http_server(bundled.parent) as url:
        mixture = _mixture(tmp_path / "mix", f"{url}/{bundled.name}/manifest.json")
        rows, keys = _train(mixture, tmp_path / "run", cache=tmp_path / "cache", cache_limit=limit, workers=1)
    assert keys == local_keys
    fetched = sum(int(r["fetched_bytes"]) for r in rows)
    tars = _cached_tars(tmp_path / "cache")
    assert sum(p.stat().st_size for p in tars) <= limit < fetched  # evicted: more fetched than kept
    assert all(r["cache_hit_rate"] != "" for r in rows)


def _pin_and_wait(root: str, ready, release) -> None:
    cache = ShardCache(root)
    assert cache.pin(Path(root) / "L" / "shards" / "a.tar")
    ready.set()
    release.wait(30)


def test_eviction_skips_shards_another_process_pins_and_goes_by_last_use(tmp_path):
    root = tmp_path / "cache"
    for i, name in enumerate(["a", "b", "c"]):
        p = root / "L" / "shards" / f"{name}.tar"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(bytes(1000))
        os.utime(p, (1000 + i, 1000 + i))  # a is the least recently used, c the most
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_pin_and_wait, args=(str(root), ready, release))
    other.start()
    try:
        assert ready.wait(60)
        removed = ShardCache(root, limit=2000).evict()
        assert removed == 1000
        assert sorted(p.name for p in _cached_tars(root)) == ["a.tar", "c.tar"]  # a pinned, b oldest free
    finally:
        release.set()
        other.join(30)
    assert ShardCache(root, limit=1000).evict() == 1000  # pinning a was a use: c is the older now
    assert [p.name for p in _cached_tars(root)] == ["a.tar"]


def test_a_layout_cache_is_named_by_its_manifest(tmp_path):
    store = Store(tmp_path)
    a = CachedLayout(ShardCache(tmp_path / "c"), store, b'{"datasets": {}}', {"datasets": {}})
    b = CachedLayout(ShardCache(tmp_path / "c"), store, b'{"datasets": {}, "v": 2}', {"datasets": {}})
    assert a.folder != b.folder and a.folder.parent == b.folder.parent == tmp_path / "c"
