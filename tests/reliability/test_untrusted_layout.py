"""Layouts and URLs are input, not trusted: only allow-listed URL schemes reach fsspec, and a shard's
tar members are checked on every byte-range read (regular files named `<key>.<ext>` of the sample, no
absolute names, `..`, backslashes, links or devices), over a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile

import pytest
from conftest import REPO
from servers import http_server

from vlamix.shards.random_access import SampleReadError, read_sample
from vlamix.shards.store import SCHEMES, Store, UnsupportedURL, check_url

REFUSED = [
    "ftp://host/layout",
    "data:text/plain,hello",
    "javascript:alert(1)",
    "memory://layout",
    "ssh://host/layout",
    "simplecache::http://127.0.0.1/layout",
    "zip://manifest.json::file:///tmp/layout.zip",
    "HTTP://127.0.0.1/layout",  # fsspec's schemes are case-sensitive: no second spelling
]
ALLOWED = [
    "out",
    "/abs/out",
    "./odd:name",
    "file:///abs/out",
    "http://127.0.0.1:8000/out",
    "https://[::1]:8443/out/manifest.json",
    "s3://bucket/layouts/v1",
    "hf://datasets/org/name",
    "gs://bucket/out",
    "az://container/out",
    "abfs://container/out",
]


@pytest.mark.parametrize("url", REFUSED)
def test_unlisted_url_schemes_are_refused_naming_the_allowed_ones(url):
    with pytest.raises(UnsupportedURL) as err:
        Store(url)
    message = str(err.value)
    assert message.startswith(url) and "\n" not in message
    assert all(f"{s}://" in message for s in SCHEMES)
    assert isinstance(err.value, ValueError) and isinstance(err.value, OSError)  # every CLI's one-liner


@pytest.mark.parametrize("url", ALLOWED)
def test_listed_schemes_and_paths_pass(url):
    check_url(url)


def test_a_refused_url_is_a_one_line_cli_error():
    done = subprocess.run(
        [sys.executable, "-m", "vlamix.cli", "inspect", "simplecache::http://127.0.0.1:9/out"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2 and "chained fsspec URLs" in done.stderr and "Traceback" not in done.stderr


KEY = "good/000000"


def _member(name: str, data: bytes = b"{}", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = kind, link, 0
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


CRAFTED = {
    "dotdot": (["good/000000.meta.json", "../../x.txt"], "`..` path part"),
    "absolute": (["/etc/x.txt"], "an absolute name"),
    "backslash": ([f"{KEY}.meta.json", "good\\000000.txt"], "backslash"),
    "other_key": ([f"{KEY}.meta.json", "other/000001.txt"], "not `<key>.<ext>`"),
    "bad_extension": ([f"{KEY}.meta.json", f"{KEY}.TXT"], "not `<key>.<ext>`"),
    "symlink": ([f"{KEY}.meta.json", (f"{KEY}.txt", tarfile.SYMTYPE, "/etc/passwd")], "a link"),
    "hardlink": ([f"{KEY}.meta.json", (f"{KEY}.txt", tarfile.LNKTYPE, f"{KEY}.meta.json")], "a link"),
    "device": ([(f"{KEY}.dev", tarfile.CHRTYPE, "")], "a device"),
    "directory": ([(f"{KEY}.d", tarfile.DIRTYPE, "")], "a directory"),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder of crafted shards (each: a good sample, then the crafted one) served over HTTP."""
    folder = tmp_path_factory.mktemp("untrusted")
    ranges = {}
    for case, (members, _) in {**CRAFTED, "clean": ([f"{KEY}.meta.json", f"{KEY}.txt"], "")}.items():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            tar.addfile(*_member("first/000000.meta.json"))
            start = buf.tell()
            for m in members:
                tar.addfile(*(_member(m) if isinstance(m, str) else _member(m[0], b"", m[1], m[2])))
            end = buf.tell()
        (folder / f"{case}.tar").write_bytes(buf.getvalue())
        ranges[case] = (start, end - start)
    with http_server(folder) as url:
        yield url, ranges, folder


def test_a_clean_sample_reads_by_its_byte_range(site):
    url, ranges, _ = site
    sample = read_sample(url, "clean.tar", *ranges["clean"], key=KEY)
    assert sample == {"__key__": KEY, "meta.json": b"{}", "txt": b"{}"}


@pytest.mark.parametrize("case", sorted(CRAFTED))
@pytest.mark.parametrize("key", [KEY, None], ids=["key", "no_key"])
def test_crafted_members_are_refused_naming_shard_offset_and_member(site, case, key):
    url, ranges, folder = site
    offset, length = ranges[case]
    with pytest.raises(SampleReadError) as err:
        read_sample(url, f"{case}.tar", offset, length, key=key)
    message = str(err.value)
    assert f"{url}/{case}.tar bytes {offset}+{length}" in message and "\n" not in message
    assert "refused" in message and CRAFTED[case][1] in message, message
    bad = CRAFTED[case][0][-1]
    assert repr(bad if isinstance(bad, str) else bad[0]) in message  # the member, named
    assert not (folder.parent / "x.txt").exists() and not (folder / "x.txt").exists()  # nothing written
