"""Raw sources at URLs (issue 20): the bundled samples of every format, copied to moto's S3 server and to
a static HTTP server on 127.0.0.1, ingest to the same shard, index and statistics bytes as from local
paths; a transient server error is retried, a file that keeps failing quarantines exactly its episode
with the URL; a URL with a password is refused; the credentials never reach a written file or a log."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SECRET, assert_no_secret, files_of, url_sources
from servers import Faults, http_server, s3_server

from vlamix.pipelines.robot_extract import EpisodeExtract
from vlamix.sources.config import load_sources
from vlamix.sources.readers import reader_for

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
REPO = SAMPLES.parent


def ingest(sources: Path, out: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "vlamix.cli", "ingest", "--sources", str(sources), "--out", str(out)]
    return subprocess.run(
        [*cmd, "--workers", "2", "--json", *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
    )


def _written(out: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture
def secret_env(monkeypatch) -> dict:
    for k, v in SECRET.items():
        monkeypatch.setenv(k, v)
    return SECRET


# nightly: `make test` reads every bundled format from S3 on the two-node Ray cluster
# (tests/pipelines/test_ray_cluster.py), against the same local ingest
@pytest.mark.nightly
def test_ingest_from_s3_writes_the_bytes_of_the_local_ingest(bundled, tmp_path, secret_env):
    import fsspec

    with s3_server() as endpoint:
        os.environ.update(secret_env)  # s3_server set its own keys: moto takes any, ours are greppable
        fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint})
        fs.mkdir("raw")
        fs.put(str(SAMPLES) + "/", "raw/samples/", recursive=True)
        sources = url_sources(tmp_path, "s3://raw/samples")
        done = ingest(sources, tmp_path / "out", {**secret_env, "AWS_ENDPOINT_URL_S3": endpoint})
    assert done.returncode == 0, done.stderr[-3000:]
    local = json.loads((bundled / "manifest.json").read_text())
    remote = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert files_of(remote) == files_of(local)
    for name, entry in remote["datasets"].items():
        assert entry["accounting"] == local["datasets"][name]["accounting"], name
    assert_no_secret(_written(tmp_path / "out"), done.stdout, done.stderr)


# Every format over HTTP is nightly (the S3 test above reads every one); here one dataset per way of reading
# a file: HDF5 (whole file), LeRobot (parquet and AV1 mp4 by Range), RLDS (TFRecord), HL/VI annotations
# (JSONL) and web images. The bundled tokenizer set is reused, so each dataset's bytes equal the bundled ones.
OVER_HTTP = ("mobile_aloha_sim", "mm_subtasks", "mm_verbal", "lerobot_v30_sim", "widowx_sim", "web_coco")


def test_ingest_over_http_retries_a_flaky_file_and_writes_the_same_bytes(bundled, tmp_path, secret_env):
    faults = Faults()
    served = tmp_path / "www"
    shutil.copytree(SAMPLES, served / "samples")
    (tokenizers,) = (bundled / "tokenizers").iterdir()
    with http_server(served, faults) as url:
        sources = url_sources(tmp_path, f"{url}/samples", only=OVER_HTTP)
        flaky = "/samples/mobile_aloha/episode_1.hdf5"
        faults.fail_next(flaky, 2, 500)  # twice a server error, then it answers
        done = ingest(sources, tmp_path / "out", secret_env, "--tokenizers", str(tokenizers))
    assert done.returncode == 0, done.stderr[-3000:]
    assert faults.pending(flaky) == 0 and faults.requests[flaky] > 2
    local = json.loads((bundled / "manifest.json").read_text())
    remote = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sorted(remote["datasets"]) == sorted(OVER_HTTP)
    local["datasets"] = {k: v for k, v in local["datasets"].items() if k in OVER_HTTP}
    assert files_of(remote) == files_of(local)
    assert_no_secret(_written(tmp_path / "out"), done.stdout, done.stderr)


def test_a_file_that_keeps_failing_quarantines_its_episode_with_the_url(tmp_path):
    faults = Faults()
    shutil.copytree(SAMPLES, tmp_path / "www" / "samples")
    with http_server(tmp_path / "www", faults) as url:
        sources = load_sources(url_sources(tmp_path, f"{url}/samples"))
        src = sources.robot("mobile_aloha_sim")
        refs = reader_for(src.format).list_episodes(sources, src)
        assert [r.source_file for r in refs] == [
            f"{url}/samples/mobile_aloha/episode_{i}.hdf5" for i in range(3)
        ]
        emb = sources.embodiment(src)
        faults.fail_next("/samples/mobile_aloha/episode_2.hdf5", 1000, 503)
        outcomes = [EpisodeExtract(r, src, emb, str(tmp_path / "out")).extract("raise") for r in refs]
    assert [len(o.results) for o in outcomes] == [1, 1, 0]
    (bad,) = outcomes[2].quarantined
    assert bad.source_file == f"{url}/samples/mobile_aloha/episode_2.hdf5"
    assert "HTTP 503" in bad.reason and "after 4 attempts" in bad.reason and url in bad.reason


@pytest.mark.parametrize(
    "url",
    [
        "https://someone:hunter2@127.0.0.1:9/samples/mobile_aloha",
        "s3://AKIAX:hunter2@raw/samples/mobile_aloha",
        "https://127.0.0.1:9/samples/mobile_aloha?X-Amz-Signature=hunter2",
    ],
)
def test_a_url_with_credentials_is_refused_without_echoing_them(tmp_path, url):
    sources = url_sources(tmp_path, "http://127.0.0.1:9/samples")
    text = sources.read_text().replace("http://127.0.0.1:9/samples/mobile_aloha", url)
    sources.write_text(text)
    done = ingest(sources, tmp_path / "out", {})
    assert done.returncode == 2
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "carries credentials" in lines[0] and "mobile_aloha_sim" in lines[0]
    assert "hunter2" not in done.stderr + done.stdout
    assert not (tmp_path / "out").exists()


def test_an_hf_source_under_hf_hub_offline_is_a_one_line_error(tmp_path):
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        "datasets:\n  - {name: hub_demo, kind: ME, format: lerobot, path: hf://datasets/lerobot/pusht@v2.1, "
        "embodiment: " + str(SAMPLES / "embodiments" / "sim_arm6_30hz.yaml") + "}\n"
    )
    done = ingest(sources, tmp_path / "out", {"HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "HF_HUB_OFFLINE" in lines[0] and "hf://datasets/lerobot/pusht@v2.1" in lines[0]
