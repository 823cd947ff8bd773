"""Whole shards of remote layouts on this machine's disk (MosaicML Streaming's idea, vlamix's sampler):
what the trainer reads samples from when a layout lives at a URL.

    CACHE/<layout hash>/shards/<dataset>/<dataset>-NNNNNN.tar    verified copies, named as in the layout
    CACHE/.locks/<layout hash>/<shard hash>.lock                 one flock file per shard (never removed)

- **Fetch.** A shard is fetched whole with one streaming GET (no Range requests: any static HTTP server,
  S3 and hf:// alike), written to a temp name while its sha256 is computed, and renamed into place only
  when its size and sha256 equal the manifest's; a shard whose bytes changed on the server fails with
  one line naming it. Transient errors are retried (sources/remote.py `retrying`).
- **Layout hash.** The sha256 of the manifest's bytes: a re-published layout gets a cache of its own, so
  a cached copy is never a stale one.
- **Many readers.** Dataloader workers, prefetch threads and every rank of the node share one cache
  folder. Each shard has a lock file: a fetch holds it exclusively (others wait, then find the file), a
  reader holds it shared while it reads the shard (a pin), and eviction takes it exclusively without
  waiting, so it never removes a shard somebody is reading. The locks are flock(2)s: a process that
  dies releases its own.
- **Eviction.** After each fetch, while the cache holds more than `limit` bytes, the least recently used
  shard (file mtime, touched on every use) that nobody pins is removed. Pinned shards are never removed,
  so a limit smaller than what the readers pin at once is exceeded for that moment (and said once); the
  reader whose eviction left it over the limit evicts again when it lets its own pins go.

Counters (bytes fetched, samples whose shard was already here or not) are per process; the trainer
hands them on with each batch."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vlamix.shards.random_access import SampleReadError
from vlamix.shards.store import Store
from vlamix.sources.remote import retrying

__all__ = ["CachedLayout", "ShardCache", "ShardCacheError", "layout_hash"]

log = logging.getLogger("vlamix.shard_cache")
STALE_TMP_S = 3600  # a temp file this old belongs to a fetch that died: removed by the next eviction
CHUNK = 1 << 20


class ShardCacheError(SampleReadError):
    """A shard that cannot be fetched whole and verified: one line naming its URL and what to do."""


def layout_hash(manifest_bytes: bytes) -> str:
    return hashlib.sha256(manifest_bytes).hexdigest()[:16]


@dataclass
class Counters:
    fetched_bytes: int = 0
    fetched_shards: int = 0
    hits: int = 0  # samples whose shard was here when a batch needed it
    misses: int = 0  # samples whose shard had to be fetched (or waited for) first

    def take(self) -> dict:
        """The counts since the last call, reset."""
        out = dict(vars(self))
        for k in out:
            setattr(self, k, 0)
        return out


class ShardCache:
    """The cache folder, its byte limit (None: no limit) and this process' counters and pins."""

    def __init__(self, root: str | Path, limit: int | None = None):
        if limit is not None and limit < 1:
            raise ValueError(f"cache limit {limit}: give a positive number of bytes (or none)")
        self.root = Path(root).expanduser()
        self.limit = limit
        self.counters = Counters()
        self._lock = threading.Lock()  # the counters and the pins of this process' threads
        self._pins: dict[Path, tuple[int, int]] = {}  # shard file -> (lock fd, pins)
        self._warned = False
        self.over_limit = False  # this process' last eviction had to leave pinned shards over the limit

    def __getstate__(self) -> dict:  # handed to dataloader workers: no fds, no locks
        return {"root": self.root, "limit": self.limit}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"], state["limit"])

    def count(self, **added: int) -> None:
        with self._lock:
            for k, v in added.items():
                setattr(self.counters, k, getattr(self.counters, k) + v)

    def take_counters(self) -> dict:
        with self._lock:
            return self.counters.take()

    # --- locks and pins ---
    def _lock_file(self, path: Path) -> Path:
        rel = path.relative_to(self.root).as_posix()
        top, _, rest = rel.partition("/")
        name = hashlib.sha256(rest.encode()).hexdigest()[:24]
        lock = self.root / ".locks" / top / f"{name}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        return lock

    def _open_lock(self, path: Path) -> int:
        return os.open(self._lock_file(path), os.O_RDWR | os.O_CREAT, 0o644)

    def pin(self, path: Path) -> bool | None:
        """Hold `path` against eviction (a shared lock) if it is here: True; None if it is here only
        after waiting for a fetch in flight (also pinned); False if it is not here."""
        with self._lock:
            if path in self._pins:
                fd, n = self._pins[path]
                self._pins[path] = (fd, n + 1)
                return True
        fd = self._open_lock(path)
        waited = False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # somebody is fetching it
            waited = True
            fcntl.flock(fd, fcntl.LOCK_SH)
        if not path.exists():
            os.close(fd)
            return False
        with contextlib.suppress(OSError):
            os.utime(path)  # the LRU order
        with self._lock:
            if path in self._pins:  # another thread pinned it meanwhile: keep one fd
                os.close(fd)
                fd, n = self._pins[path]
                self._pins[path] = (fd, n + 1)
            else:
                self._pins[path] = (fd, 1)
        return None if waited else True

    def unpin(self, path: Path) -> None:
        with self._lock:
            fd, n = self._pins[path]
            if n > 1:
                self._pins[path] = (fd, n - 1)
                return
            del self._pins[path]
        os.close(fd)  # releases the shared lock

    @contextlib.contextmanager
    def _exclusive(self, path: Path) -> Iterator[None]:
        fd = self._open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # --- eviction ---
    def _files(self) -> list[tuple[float, int, Path]]:
        out, now = [], time.time()
        for p in self.root.glob("*/shards/**/*"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            if not p.is_file():
                continue
            if p.name.startswith("."):  # a fetch in flight, or one that died long ago
                if now - st.st_mtime > STALE_TMP_S:
                    p.unlink(missing_ok=True)
                continue
            out.append((st.st_mtime, st.st_size, p))
        return sorted(out)

    def size(self) -> int:
        return sum(size for _, size, _ in self._files())

    def evict(self, keep: Path | None = None) -> int:
        """Remove least recently used shards nobody pins until the cache is within its limit; returns the
        bytes removed."""
        if self.limit is None:
            return 0
        (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        guard = os.open(self.root / ".locks" / "evict.lock", os.O_RDWR | os.O_CREAT, 0o644)
        removed = 0
        try:
            fcntl.flock(guard, fcntl.LOCK_EX)  # one evictor at a time
            files = self._files()
            total = sum(size for _, size, _ in files)
            for _, size, path in files:
                if total <= self.limit:
                    break
                if path == keep:
                    continue
                fd = self._open_lock(path)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue  # pinned (or being fetched): never removed
                try:
                    path.unlink(missing_ok=True)
                finally:
                    os.close(fd)
                total -= size
                removed += size
            self.over_limit = total > self.limit
            if self.over_limit and not self._warned:
                self._warned = True
                log.warning(
                    "shard cache %s holds %d bytes, over its limit of %d: the shards being read now are "
                    "pinned; give a larger --cache-limit",
                    self.root,
                    total,
                    self.limit,
                )
        finally:
            os.close(guard)
        return removed


class CachedLayout:
    """One remote layout's shards through a ShardCache: `ensure(rel)` makes the shard local and returns
    its path; `pinned(rels)` holds the batch's shards while they are read."""

    def __init__(self, cache: ShardCache, store: Store, manifest_bytes: bytes, manifest: dict):
        self.cache = cache
        self.store = store
        self.key = layout_hash(manifest_bytes)
        self.folder = cache.root / self.key
        self.local = Store(self.folder)  # read_sample reads the copies through it
        self.shards = {s["path"]: s for d in manifest["datasets"].values() for s in d["shards"]}

    def path(self, rel: str) -> Path:
        return self.folder / rel

    def _fetch(self, rel: str, target: Path) -> int:
        """Download `rel` whole into `target` (temp name, verified, renamed); returns its bytes."""
        want = self.shards.get(rel)
        url = self.store.url_of(rel)
        if want is None:
            raise ShardCacheError(f"{url}: not a shard of the layout's manifest")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")

        def download() -> tuple[int, str]:
            h, n = hashlib.sha256(), 0
            with self.store.open(rel, stream=True) as src, tmp.open("wb") as dst:
                for block in iter(lambda: src.read(CHUNK), b""):
                    h.update(block)
                    dst.write(block)
                    n += len(block)
            return n, h.hexdigest()

        try:
            try:
                n, digest = retrying(download, url, "fetch", remote=True)
            except FileNotFoundError as e:
                raise ShardCacheError(
                    f"{url}: not found on the server; re-publish the layout or fix the mixture's layouts"
                ) from e
            except OSError as e:
                raise ShardCacheError(f"{e}; check the server, then run the same command again") from e
            if n != want["bytes"] or digest != want["sha256"]:
                raise ShardCacheError(
                    f"{url}: fetched {n} bytes with sha256 {digest[:16]}..., the manifest says "
                    f"{want['bytes']} bytes, {want['sha256'][:16]}...: the shard changed on the server after "
                    "publishing; re-publish the layout"
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return n

    def worth_prefetching(self, rel: str) -> bool:
        """A cache that cannot hold two copies of this shard would evict a prefetched one before its
        batch came: such a cache only fetches what a batch needs now."""
        limit = self.cache.limit
        return limit is None or rel not in self.shards or limit >= 2 * self.shards[rel]["bytes"]

    def ensure(self, rel: str, pin: bool = False) -> bool:
        """Make shard `rel` local (fetching it if no one has); with `pin`, hold it until `unpin`. Returns
        True when it was already here (not fetched, nor waited for)."""
        target = self.path(rel)
        here = True
        while True:
            found = self.cache.pin(target)
            if found is not False:
                if not pin:
                    self.cache.unpin(target)
                return here and found is True
            here = False
            with self.cache._exclusive(target):
                if not target.exists():
                    n = self._fetch(rel, target)
                    self.cache.count(fetched_bytes=n, fetched_shards=1)
            self.cache.evict(keep=target)

    def unpin(self, rel: str) -> None:
        self.cache.unpin(self.path(rel))
