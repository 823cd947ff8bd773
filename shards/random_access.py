"""One sample by its byte range (from the index): a single range read of its contiguous members, over a
local file or any URL the Store reaches. What the sampler's draws point at."""

from __future__ import annotations

import io
import tarfile

from vlamix.shards.store import Store, store_for

__all__ = ["read_sample"]


def read_sample(
    where: str | Store, shard: str, offset: int, length: int, key: str | None = None
) -> dict[str, bytes]:
    """{member extension: bytes} plus `__key__`; `key`, when given, must be the sample found there."""
    store = where if isinstance(where, Store) else store_for(where)
    chunk = store.read_bytes(shard, offset, offset + length)
    out: dict = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(chunk)) as tar:
            for m in tar.getmembers():
                k, ext = m.name.split(".", 1)
                out["__key__"] = k
                out[ext] = tar.extractfile(m).read()
    except tarfile.TarError as e:
        raise OSError(
            f"{store.url_of(shard)} bytes {offset}+{length}: not a sample ({e}); is the index stale?"
        ) from e
    if key is not None and out.get("__key__") != key:
        raise OSError(
            f"{store.url_of(shard)} bytes {offset}+{length}: holds {out.get('__key__')!r}, not {key!r}"
        )
    return out
