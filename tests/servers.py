"""Real servers on 127.0.0.1 for the tests: a static HTTP server that honours Range requests (as nginx,
S3 and the Hugging Face Hub do; Python's own http.server does not), and moto's S3-compatible server.

The HTTP server takes an optional `Faults`: a test arms it to make the next K requests for a path answer
an error status (500, 404, ...) or drop the connection without an answer, and reads how many requests
each path got."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
DROP = "drop"  # a Faults status: close the connection without answering


class Faults:
    """Failures armed per URL path (`/out/shards/a/a-000000.tar`): `fail_next(path, k, status)` makes
    the next k requests for it (GET or HEAD; with `ranged=True` only GETs with a Range header, the
    reads of single samples; with `gets=True` only GETs, ranged or whole: the trainer's shard fetches)
    answer `status`, or drop the connection for DROP. `requests[path]` counts every request the server
    got for a path, failed ones included."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[str, list] = {}
        self.requests: Counter[str] = Counter()

    def fail_next(
        self, path: str, count: int, status: int | str = 500, ranged: bool = False, gets: bool = False
    ) -> None:
        with self._lock:
            self._armed[path] = [count, status, ranged, gets]

    def pending(self, path: str) -> int:
        with self._lock:
            return self._armed.get(path, [0])[0]

    def take(self, path: str, ranged: bool, get: bool = True) -> int | str | None:
        """The failure to answer this request with, or None to serve it."""
        with self._lock:
            self.requests[path] += 1
            armed = self._armed.get(path)
            if not armed or armed[0] <= 0 or (armed[2] and not ranged) or (armed[3] and not get):
                return None
            armed[0] -= 1
            return armed[1]


class RangeHandler(SimpleHTTPRequestHandler):
    faults: Faults | None = None
    ranges = True  # False: answer every GET whole with 200, as Python's own http.server does

    def log_message(self, *args) -> None:  # quiet
        pass

    def _fault(self) -> bool:
        """Answer with the armed failure, if any; True when the request is answered so."""
        ranged = self.command == "GET" and "Range" in self.headers
        path = self.path.split("?", 1)[0]
        failure = None if self.faults is None else self.faults.take(path, ranged, self.command == "GET")
        if failure is None:
            return False
        if failure == DROP:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self.send_error(int(failure))
        return True

    def send_head(self):
        if self._fault():
            return None
        m = _RANGE.match(self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if not m or not path.is_file() or not self.ranges:
            return super().send_head()
        size = path.stat().st_size
        start, end = int(m.group(1)), int(m.group(2)) if m.group(2) else size - 1
        end = min(end, size - 1)
        if start >= size:
            self.send_error(416)
            return None
        f = path.open("rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return _Limited(f, end - start + 1)

    def copyfile(self, source, outputfile) -> None:
        if isinstance(source, _Limited):
            outputfile.write(source.f.read(source.n))
            source.f.close()
            return
        super().copyfile(source, outputfile)


class _Limited:
    def __init__(self, f, n: int):
        self.f, self.n = f, n

    def close(self) -> None:
        self.f.close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that closes a connection before the whole answer is sent (fsspec probing a file
        with a GET it does not read to the end) is normal; anything else is still printed."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def http_server(folder: Path, faults: Faults | None = None, ranges: bool = True) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (with the failures `faults` is armed with; without Range support
    when `ranges` is False); yields its base URL."""
    handler_class = type("ServedHandler", (RangeHandler,), {"faults": faults, "ranges": ranges})
    handler = functools.partial(handler_class, directory=str(folder))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3-compatible server on 127.0.0.1, with the AWS_* variables pointing at it; yields the
    endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class PythonServer:
    """`python -m http.server` itself (no Range support) serving a folder, in a child process; `gets()`
    lists the paths it was asked for so far, from its own request log."""

    def __init__(self, folder: Path):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
                str(folder),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 40123 (http://...) ..."
        port = re.search(r"port (\d+)", line)
        if port is None:
            self.close()
            raise RuntimeError(f"python -m http.server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{port.group(1)}"
        self._log: list[str] = []
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        for line in self.proc.stderr:
            self._log.append(line)

    def gets(self) -> list[str]:
        """Paths of the GET requests logged so far (`"GET /out/shards/... HTTP/1.1" 200 -`)."""
        time.sleep(0.2)  # the log line is written after the answer
        return [m.group(1) for line in list(self._log) if (m := re.search(r'"GET (\S+) HTTP', line))]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def python_http_server(folder: Path) -> Iterator[PythonServer]:
    server = PythonServer(folder)
    try:
        yield server
    finally:
        server.close()
