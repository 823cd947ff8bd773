"""Where the trainer's draws get their bytes: a local layout is read in place (one read per sample); a
layout at a URL is read through the shard cache (shards/shard_cache.py): the shards a batch needs are
made local and pinned, the samples read from the copies, and background threads fetch the shards of the
batches ahead of the sampler.

A SampleSource crosses into dataloader workers; each process builds its own cache handles, fsspec
filesystems and prefetch threads when it first reads (a forked child must not use its parent's)."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from vlamix.mixtures.sampler import Draw
from vlamix.shards.assets import cache_dir
from vlamix.shards.random_access import SampleReadError, read_sample
from vlamix.shards.shard_cache import CachedLayout, ShardCache, ShardCacheError
from vlamix.shards.store import store_for

__all__ = ["PREFETCH_THREADS", "SampleSource", "cache_for", "default_cache_root"]

PREFETCH_THREADS = 4  # shard fetches in flight per reading process


def default_cache_root() -> Path:
    """`$VLAMIX_CACHE/shards` (default `~/.cache/vlamix/shards`); each layout gets `<layout hash>/`."""
    return cache_dir() / "shards"


def _manifest_bytes(manifest: dict) -> bytes:
    """The manifest as canonical JSON: what names its layout's cache folder (shard_cache.layout_hash)."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class SampleSource:
    manifests: dict[str, dict]  # layout URL (or folder) -> its manifest
    cache: ShardCache | None = None  # None: no layout is remote, or reads go by range (not the trainer)
    threads: int = PREFETCH_THREADS

    def __post_init__(self) -> None:
        self._pid = -1

    def __getstate__(self) -> dict:
        return {"manifests": self.manifests, "cache": self.cache, "threads": self.threads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    @property
    def remote(self) -> bool:
        return self.cache is not None and any(store_for(u).remote for u in self.manifests)

    def _process(self) -> None:
        """This process' handles (built again after a fork)."""
        if self._pid == os.getpid():
            return
        first = self._pid == -1
        self._pid = os.getpid()
        self._layouts: dict[str, CachedLayout] = {}
        if self.cache is not None and not first:  # a forked child: its own locks, pins and counters
            self.cache = ShardCache(self.cache.root, self.cache.limit)
        if self.cache is not None:
            for url, manifest in self.manifests.items():
                store = store_for(url)
                if store.remote:
                    self._layouts[url] = CachedLayout(self.cache, store, _manifest_bytes(manifest), manifest)
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[tuple[str, str], Future] = {}

    def read(self, draws: list[Draw]) -> list[dict[str, bytes]]:
        """Each draw's members, checked as `read_sample` checks them (crc32, names, length)."""
        self._process()
        by_shard: dict[tuple[str, str], int] = defaultdict(int)
        for d in draws:
            if d.layout in self._layouts:
                by_shard[(d.layout, d.shard)] += 1
        pinned: list[tuple[str, str]] = []
        try:
            for (layout, shard), n in by_shard.items():
                try:
                    here = self._layouts[layout].ensure(shard, pin=True)
                except ShardCacheError as e:
                    key = next(d.key for d in draws if (d.layout, d.shard) == (layout, shard))
                    raise ShardCacheError(f"{e} (needed by sample {key})") from e
                pinned.append((layout, shard))
                assert self.cache is not None
                self.cache.count(**({"hits": n} if here else {"misses": n}))
            return [self._read_one(d) for d in draws]
        finally:
            for layout, shard in pinned:
                self._layouts[layout].unpin(shard)
            if self.cache is not None and self.cache.over_limit:
                self.cache.evict()

    def _read_one(self, d: Draw) -> dict[str, bytes]:
        cached = self._layouts.get(d.layout)
        where = d.layout if cached is None else cached.local
        try:
            return read_sample(where, d.shard, d.offset, d.length, key=d.key, crc32=d.crc32)
        except SampleReadError as e:
            if cached is None:
                raise
            raise SampleReadError(f"{e} (the cached copy of {cached.store.url_of(d.shard)})") from e

    def prefetch(self, draws: Iterable[Draw]) -> None:
        """Start fetching the shards of `draws` (remote layouts only) in background threads. Errors are
        left to the read that needs the shard, which tries again and names it."""
        self._process()
        if not self._layouts:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="vlamix-fetch")
        self._pending = {k: f for k, f in self._pending.items() if not f.done()}
        for d in draws:
            key = (d.layout, d.shard)
            cached = self._layouts.get(d.layout)
            if cached is not None and key not in self._pending and cached.worth_prefetching(d.shard):
                self._pending[key] = self._pool.submit(cached.ensure, d.shard)

    def take_counters(self) -> dict:
        """This process' fetched bytes and cache hits since the last call (zeros without a cache)."""
        if self.cache is None:
            return {"fetched_bytes": 0, "fetched_shards": 0, "hits": 0, "misses": 0}
        return self.cache.take_counters()

    def close(self) -> None:
        """Stop the prefetch threads, then bring the cache within its limit (the shards this process
        pinned were kept over it)."""
        if getattr(self, "_pool", None) is not None and self._pid == os.getpid():
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.cache is not None and self._pid == os.getpid():
            self.cache.evict()


def cache_for(manifests: dict[str, dict], root: Path | None, limit: int | None) -> ShardCache | None:
    """The shard cache the trainer reads remote layouts through (None when every layout is local)."""
    if not any(store_for(u).remote for u in manifests):
        return None
    return ShardCache(root if root is not None else default_cache_root(), limit)
