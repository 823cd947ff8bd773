"""sources/location.py against real servers on 127.0.0.1: URLs are checked before anything is read,
remote files read by byte ranges (or through a bounded spool where the server has no range support)
give the bytes of the local file, errors are retried and never read as "no such file"."""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pytest
from servers import Faults, http_server, s3_server

from vlamix.sources import location
from vlamix.sources.location import (
    OfflineHub,
    Unreachable,
    display,
    glob_files,
    is_file,
    locate,
    open_file,
    read_bytes,
)
from vlamix.sources.remote import UnsupportedURL, check_url

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
EPISODE = SAMPLES / "mobile_aloha" / "episode_0.hdf5"


def test_paths_and_urls_are_located_as_the_sources_file_names_them(tmp_path):
    assert locate(tmp_path, "data/ep.hdf5") == tmp_path / "data" / "ep.hdf5"
    assert locate(tmp_path, "/abs/ep.hdf5") == Path("/abs/ep.hdf5")
    assert locate(tmp_path, f"file://{tmp_path}/ep.hdf5") == tmp_path / "ep.hdf5"
    remote = locate(tmp_path, "http://127.0.0.1:9/raw/ep.hdf5")
    assert display(remote, tmp_path) == "http://127.0.0.1:9/raw/ep.hdf5"
    assert display(tmp_path / "data" / "ep.hdf5", tmp_path) == "data/ep.hdf5"
    gs = locate(tmp_path, "gs://bucket/raw/ep.hdf5")  # gcsfs reads it (not built here: it would look
    assert gs.protocol == "gs" and gs.path == "bucket/raw/ep.hdf5"  # for Google's metadata server)
    assert type(gs).__name__ == "GCSPath"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://ann:pw-7731@host.example/raw", "https://host.example/raw"),
        ("s3://KEY:pw-7731@bucket/raw", "s3://bucket/raw"),
        (
            "https://host.example/raw/ep.hdf5?X-Amz-Signature=pw-7731&X-Amz-Date=1",
            "https://host.example/raw/ep.hdf5",
        ),
        ("https://host.example/raw?token=pw-7731", "https://host.example/raw"),
    ],
)
def test_a_url_with_credentials_is_refused_and_the_secret_is_not_repeated(url, shown):
    with pytest.raises(UnsupportedURL) as err:
        check_url(url, credentials=False)
    assert str(err.value).startswith(f"{shown}: the URL carries credentials")
    assert "pw-7731" not in str(err.value)
    check_url(url)  # a layout URL (the Store) keeps its own rules


def test_other_schemes_and_chained_urls_are_refused(tmp_path):
    for url in ("ftp://host/raw", "simplecache::s3://bucket/raw"):
        with pytest.raises(UnsupportedURL):
            locate(tmp_path, url)


def test_hf_offline_is_one_line_naming_the_source(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineHub) as err:
        locate(tmp_path, "hf://datasets/org/name@v1/data")
    assert "\n" not in str(err.value) and str(err.value).startswith(
        "hf://datasets/org/name@v1/data: HF_HUB_OFFLINE"
    )


def _read_hdf5(f) -> tuple[np.ndarray, list[str]]:
    with h5py.File(f, "r") as h:
        return h["observations/qpos"][()], sorted(h["observations/images"])


@pytest.mark.parametrize("ranges", [True, False])
def test_an_hdf5_episode_over_http_reads_as_the_local_file(ranges, monkeypatch):
    """With range support h5py reads only what it seeks to; without, the file is spooled once."""
    faults = Faults()
    with http_server(SAMPLES, faults, ranges=ranges) as url:
        p = locate("/", f"{url}/mobile_aloha/episode_0.hdf5")
        with open_file(p) as f:
            qpos, cams = _read_hdf5(f)
        gets = faults.requests["/mobile_aloha/episode_0.hdf5"]
    want_qpos, want_cams = _read_hdf5(str(EPISODE))
    assert np.array_equal(qpos, want_qpos) and cams == want_cams
    if ranges:  # the range reads fetched 1 MiB blocks, not the file many times over
        assert gets <= 2 + EPISODE.stat().st_size // location.BLOCK_BYTES + 8


def test_a_spool_above_the_limit_is_refused_with_what_to_do(monkeypatch):
    monkeypatch.setattr(location, "SPOOL_MAX_BYTES", 1000)
    with http_server(SAMPLES, ranges=False) as url:
        f = open_file(locate("/", f"{url}/mobile_aloha/episode_0.hdf5"))
        with f, pytest.raises(Unreachable, match="does not answer range requests.*VLAMIX_SPOOL_MAX_BYTES"):
            f.seek(5000)  # (a read from byte 0 is served from the start of the whole answer)
            f.read(10)


def test_transient_errors_are_retried_and_a_persistent_one_is_never_a_missing_file(tmp_path):
    faults = Faults()
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.json").write_bytes(b'{"a": 1}')
    with http_server(tmp_path, faults) as url:
        faults.fail_next("/raw/a.json", 2, 502)
        assert read_bytes(locate("/", f"{url}/raw/a.json")) == b'{"a": 1}'
        faults.fail_next("/raw/a.json", 100, 500)
        with pytest.raises(Unreachable, match=r"a.json: cannot stat \(HTTP 500.*after 4 attempts"):
            is_file(locate("/", f"{url}/raw/a.json"))  # fsspec's own isfile would say False
        faults.fail_next("/raw/", 100, 503)
        with pytest.raises(Unreachable, match="cannot list"):
            glob_files(locate("/", f"{url}/raw"), "*")
        assert not is_file(locate("/", f"{url}/raw/missing.json"))


def test_s3_globs_and_range_reads(tmp_path):
    import fsspec

    with s3_server() as endpoint:
        fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint})
        fs.mkdir("raw")
        fs.put(str(SAMPLES / "mobile_aloha") + "/", "raw/mm/", recursive=True)
        files = sorted(glob_files(locate(tmp_path, "s3://raw/mm/*.hdf5")), key=str)
        assert [str(p) for p in files] == [f"s3://raw/mm/episode_{i}.hdf5" for i in range(3)]
        with open_file(files[0]) as f:
            f.seek(-16, io.SEEK_END)
            tail = f.read()
        assert tail == EPISODE.read_bytes()[-16:]


def test_a_v30_data_file_reads_only_the_row_groups_of_its_episode(tmp_path):
    """LeRobot v3.0 concatenates episodes in one parquet file: an episode reads its row groups only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vlamix.sources.episode import EpisodeRef
    from vlamix.sources.lerobot_meta import Episode, read_parquet

    rows = 20_000
    table = pa.table(
        {
            "episode_index": [e for e in range(3) for _ in range(rows)],
            "payload": [
                bytes(np.random.default_rng(i).integers(0, 255, 64, np.uint8)) for i in range(3 * rows)
            ],
        }
    )
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "file-000.parquet", row_group_size=rows)
    with http_server(tmp_path) as url:
        root = locate("/", url)
        ep = Episode(EpisodeRef("d", 1, url, "data/file-000.parquet#episode_000001"))
        got = read_parquet(root / "data" / "file-000.parquet", root, ep, episode=1)
    assert got.column("episode_index").to_pylist() == [1] * rows
    assert got.equals(table.slice(rows, rows))
