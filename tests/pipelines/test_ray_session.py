"""Ray leaves the machine as it found it: `ray start` records its cluster in the Ray address file
(`/tmp/ray/ray_current_cluster`), which outlives a killed cluster and sends a later plain `ray.init()` to
a cluster that is gone. The test fixtures (tests/conftest.py) and `ray_session` put it back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, ray_address_file, ray_address_file_kept


def test_the_fixtures_find_the_file_where_ray_does(monkeypatch, tmp_path):
    from vlamix.pipelines.ray_jobs import ray_address_file as rays

    assert ray_address_file() == rays()
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert ray_address_file() == rays() == tmp_path / "ray" / "ray_current_cluster"


def test_a_recorded_cluster_is_forgotten_and_an_earlier_one_restored(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    path = tmp_path / "ray" / "ray_current_cluster"
    with ray_address_file_kept():  # absent before: a test's `ray start` records its head ...
        path.parent.mkdir(parents=True)
        path.write_text("127.0.0.1:6379")
    assert not path.exists()  # ... and the file goes with it
    path.write_text("10.0.0.1:6379")  # the user's own cluster, recorded before the tests
    with ray_address_file_kept():
        path.write_text("127.0.0.1:6380")
    assert path.read_text() == "10.0.0.1:6379"
    with ray_address_file_kept():
        path.unlink()
    assert path.read_text() == "10.0.0.1:6379"


SESSION = textwrap.dedent(
    """
    import ray
    from vlamix.pipelines.ray_jobs import ray_address_file, ray_session

    path = ray_address_file()
    assert not path.exists(), path
    with ray_session(None, 1):  # what `vlamix ingest --engine ray` runs in
        assert ray.data.range(4).count() == 4
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("127.0.0.1:1")  # as `ray start` would: a cluster that ends with the session
    assert not path.exists(), path.read_text()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)  # the user's plain ray.init()
    assert ray.is_initialized()
    ray.shutdown()
    path.write_text("10.0.0.1:6379")  # the user's own cluster, recorded before an ingest
    with ray_session(None, 1):
        path.write_text("127.0.0.1:2")
    assert path.read_text() == "10.0.0.1:6379"
    print("ok")
    """
)


@pytest.mark.slow
def test_ray_session_leaves_the_address_file_as_it_found_it():
    # A short private Ray temp folder (Unix socket paths are capped at ~107 bytes): the machine's own
    # /tmp/ray is neither read nor changed.
    tmp = Path(tempfile.mkdtemp(prefix="vr", dir="/tmp"))
    try:
        env = {**os.environ, "RAY_TMPDIR": str(tmp), "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        done = subprocess.run(
            [sys.executable, "-c", SESSION], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
        )
        assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
