"""What every remote read in vlamix shares, raw sources and layouts alike: which URLs are accepted,
which errors are worth trying again, and the retry loop with backoff.

- `check_url` accepts plain paths and the schemes in `SCHEMES`. It refuses chained fsspec URLs
  (`simplecache::http://...`), and, for raw sources (`credentials=False`), any URL that carries a secret:
  a user or password before the host (`https://user:pass@host/...`, `s3://KEY:SECRET@bucket`) or a
  signature or token in the query (`?X-Amz-Signature=`, `?token=`). Credentials come from the standard
  environment (`AWS_*`, `GOOGLE_APPLICATION_CREDENTIALS`, `HF_TOKEN`) and so never reach a manifest,
  a quarantine record or a log line that names the URL.
- `retrying(call, what)` runs `call()` up to `READ_ATTEMPTS` times while it fails with a transient
  error (HTTP 5xx, 408, 429, a dropped connection, a timeout), waiting `BACKOFF_S`, then twice as long
  each time; then, or at once for a permanent error (404, 403, 416), it raises `Unreachable` naming
  `what`, the attempts and the last error. A missing file stays a FileNotFoundError."""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "BACKOFF_S",
    "READ_ATTEMPTS",
    "SCHEMES",
    "Unreachable",
    "UnsupportedURL",
    "check_url",
    "http_status",
    "is_transient",
    "is_url",
    "reason",
    "retrying",
    "storage_options",
    "unreachable_source",
]

SCHEMES = ("file", "http", "https", "s3", "hf", "gs", "az", "abfs")  # besides plain paths
READ_ATTEMPTS = 4  # a transient read error is tried again 3 times ...
BACKOFF_S = 0.25  # ... after 0.25, 0.5 and 1 s

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")  # two letters at least: `C:` stays a path
# query parameters that carry a secret (presigned S3 / GCS URLs, Azure SAS, tokens in general)
_SECRET_PARAMS = re.compile(r"(signature|token|secret|password|passwd|credential|key|sig)$", re.I)
log = logging.getLogger("vlamix.remote")
T = TypeVar("T")


class Unreachable(OSError):
    """A remote file that could not be read: the message names the URL, the attempts and the cause."""


class UnsupportedURL(Unreachable, ValueError):
    """A URL vlamix does not read: an unknown scheme, a chained URL, or one with credentials in it."""


def is_url(text: str | Path) -> bool:
    return isinstance(text, str) and "://" in text


def check_url(text: str | Path, credentials: bool = True) -> None:
    """Refuse a URL whose scheme is not in SCHEMES and chained fsspec URLs (`a::b`); with
    `credentials=False`, also a URL carrying a user, password, token or signature. Paths pass."""
    if not isinstance(text, str):
        return
    allowed = ", ".join(f"{s}://" for s in SCHEMES)
    if "::" in re.sub(r"\[[^\]]*\]", "", text):  # `simplecache::http://...`; not an IPv6 host `[::1]`
        raise UnsupportedURL(
            f"{text}: chained fsspec URLs (`::`) are refused; give a plain path or one of {allowed}"
        )
    m = _SCHEME.match(text)
    if m and m.group(1) not in SCHEMES:
        hint = "" if "://" in text else f" (a local file whose name has a colon: write ./{text})"
        raise UnsupportedURL(
            f"{text}: scheme {m.group(1)!r} is not allowed; give a path or one of {allowed}{hint}"
        )
    if credentials or not is_url(text):
        return
    parts = urlsplit(text)
    secret = "@" in parts.netloc or any(_SECRET_PARAMS.search(k) for k, _ in parse_qsl(parts.query))
    if secret:
        shown = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"  # never echo the secret
        raise UnsupportedURL(
            f"{shown}: the URL carries credentials (a user or password before the host, or a token or "
            "signature in the query), which would end up in the manifest and the logs; remove them and "
            "give them through the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
            "GOOGLE_APPLICATION_CREDENTIALS, HF_TOKEN)"
        )


def http_status(e: BaseException) -> int | None:
    """The HTTP status behind an error (aiohttp, or botocore behind s3fs's OSError), if any."""
    for err in (e, e.__cause__, e.__context__):
        status = getattr(err, "status", None)
        if isinstance(status, int):
            return status
        meta = (getattr(err, "response", None) or {}) if err is not None else {}
        code = meta.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(meta, dict) else None
        if isinstance(code, int):
            return code
    return None


def is_transient(e: BaseException) -> bool:
    """Worth trying again: a server error (5xx, 408, 429), a dropped connection or a timeout."""
    if isinstance(e, FileNotFoundError | PermissionError | IsADirectoryError | UnsupportedURL):
        return False
    status = http_status(e)
    if status is not None:
        return status >= 500 or status in (408, 429)
    if isinstance(e, ConnectionError | TimeoutError):
        return True
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - fsspec[http] brings it
        return False
    if isinstance(e, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return True
    return isinstance(e, OSError) and e.errno in (errno.EIO, errno.ECONNRESET, errno.ETIMEDOUT)


def reason(e: BaseException) -> str:
    """One line saying why a remote call failed (`HTTP 503 Service Unavailable`, `ConnectionError: ...`)."""
    status = http_status(e)
    if status is not None:
        message = getattr(e, "message", "") or ""
        return f"HTTP {status}{' ' + message if message else ''}"
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def retrying(call: Callable[[], T], what: str, doing: str = "read", remote: bool = True) -> T:
    """`call()`, tried again after a transient error (READ_ATTEMPTS in all, exponential backoff) when
    `remote`; a permanent error, or the last transient one, becomes `Unreachable` naming `what`. A
    FileNotFoundError passes through as it is."""
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            return call()
        except Exception as e:
            err: BaseException = e
            if isinstance(e, FileNotFoundError):
                # fsspec's HTTP stat says "not found" for a 500 too: the cause tells them apart
                if not remote or e.__cause__ is None or not is_transient(e.__cause__):
                    raise
                err = e.__cause__
            if not remote or not is_transient(err) or attempt == READ_ATTEMPTS:
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                raise Unreachable(f"{what}: cannot {doing} ({reason(err)}){tries}") from err
            log.warning("%s: %s; trying again (%d of %d)", what, reason(err), attempt + 1, READ_ATTEMPTS)
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def storage_options(protocol: str) -> dict:
    """fsspec options from the standard environment: the S3 endpoint (`AWS_ENDPOINT_URL_S3`, else
    `AWS_ENDPOINT_URL`); keys, regions, GCS and Hub credentials are read by s3fs, gcsfs and
    huggingface_hub themselves."""
    if protocol in ("s3", "s3a"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}
    return {}


def unreachable_source(e: BaseException) -> Unreachable | None:
    """The `Unreachable` behind `e`, when a remote read gave up (format libraries such as h5py, PyAV
    and pyarrow wrap the exceptions their file objects raise); None for any other error."""
    seen: set[int] = set()
    err: BaseException | None = e
    while err is not None and id(err) not in seen:
        if isinstance(err, Unreachable) and not isinstance(err, UnsupportedURL):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None
