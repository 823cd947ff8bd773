"""`vlamix publish` to a real S3-compatible server (moto, on 127.0.0.1) and reading layouts back over S3
and HTTP; the Hugging Face Hub is tested up to the network boundary (no network here)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from conftest import REPO
from servers import http_server, s3_server

from vlamix.shards.publish import hf_commits, parse_hf_url, plan_files, publish
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir
from vlamix.trainer.train import TrainOptions, train

pytestmark = pytest.mark.slow
BUCKET = "vlamix-test"


@pytest.fixture(scope="module")
def s3():
    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with s3_server() as endpoint:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vlamix.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def test_publish_to_s3_reads_back_equal_and_resumes(bundled, s3, tmp_path):
    url = f"s3://{BUCKET}/layouts/v1"
    order = []
    report = publish(bundled, url, progress=lambda f, status: order.append((f.rel, status)))
    files = plan_files(bundled)
    assert report["sent"] == len(files) == len(order) and report["skipped"] == 0
    assert report["skipped_unnamed"] == []  # an ingest's own layout: the manifest names every file
    assert order[-1] == ("manifest.json", "sent") and order[-2][0] == "README.md"
    assert not any(WorkDir.holds(rel) for rel, _ in order)
    # read back: every published file equals the local one, byte for byte
    store = Store(url)
    for f in files:
        assert store.read_bytes(f.rel) == (bundled / f.rel).read_bytes(), f.rel
    assert {f.rel for f in files} >= {"index/mobile_aloha_sim.parquet", "stats/mobile_aloha_sim.json"}

    # resumable: a lost object and a corrupted one are sent again, nothing else
    shard = json.loads((bundled / "manifest.json").read_text())["datasets"]["widowx_sim"]["shards"][0]["path"]
    store.fs.rm(store.path("stats/widowx_sim.json"))
    store.fs.pipe_file(store.path(shard), b"not a tar")
    again = publish(bundled, url)
    assert (again["sent"], again["skipped"]) == (2, len(files) - 2)

    # the CLI reads it over S3 (endpoint and keys from the AWS_* variables) and lints it clean
    done = _cli("inspect", f"{url}/manifest.json", "--lint", "--json")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert (
        summary["problems"] == []
        and summary["samples"] == json.loads(_cli("inspect", str(bundled), "--json").stdout)["samples"]
    )

    # the trainer reads it from S3 through the shard cache: the samples of a run from the folder
    keys = {}
    for where, layout in (("s3", f"{url}/manifest.json"), ("local", str(bundled / "manifest.json"))):
        mixture = tmp_path / f"{where}.yaml"
        mixture.write_text(
            f"name: m\nstage: pretrain\nlayouts: [{layout}]\ncomponents:\n"
            "  - {dataset: mobile_aloha_sim}\n  - {dataset: web_coco}\n"
        )
        opts = TrainOptions(
            "pretrain", mixture, tmp_path / where, steps=2, batch_size=4, workers=0, eval_batches=0,
            log_samples=True, cache=tmp_path / "cache",
        )  # fmt: skip
        row = train(opts, echo=lambda _: None)
        keys[where] = (tmp_path / where / "samples.jsonl").read_text()
        assert (row["cache_hit_rate"] is None) == (where == "local")  # the cache is for remote layouts only
    assert keys["s3"] == keys["local"]
    assert list((tmp_path / "cache").glob("*/shards/mobile_aloha_sim/*.tar"))


# nightly: the CLI end to end; `make test` holds publish to folders, S3 and HTTP reads by the tests above
@pytest.mark.nightly
def test_publish_cli_to_a_folder_then_read_over_http(bundled, tmp_path):
    dest = tmp_path / "site" / "layout"
    done = _cli("publish", str(bundled), "--to", f"file://{dest}", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["sent"] == len(plan_files(bundled))
    assert not list(dest.rglob(".*"))  # no temp file left
    with http_server(tmp_path / "site") as base:
        cache = tmp_path / "cache"
        done = _cli(
            "inspect",
            f"{base}/layout/manifest.json",
            "--lint",
            "--json",
            "--preview",
            "mm_subtasks",
            "-n",
            "2",
            "--preview-dir",
            str(tmp_path / "prev"),
            env={"VLAMIX_CACHE": str(cache)},
        )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["problems"] == [] and len(report["preview"]) == 2
    assert report["preview"][0]["decoded_targets"]  # tokens decoded with the set fetched over HTTP
    tok = json.loads((bundled / "manifest.json").read_text())["tokenizer_set"]["sha256"]
    assert (cache / "tokenizers" / tok / "vocab_layout.json").is_file()


def test_lint_over_http_catches_a_corrupted_shard(bundled, tmp_path):
    dest = tmp_path / "layout"
    publish(bundled, str(dest))
    shard = json.loads((dest / "manifest.json").read_text())["datasets"]["web_coco"]["shards"][0]["path"]
    data = bytearray((dest / shard).read_bytes())
    data[600] ^= 0x01
    (dest / shard).write_bytes(bytes(data))
    with http_server(tmp_path) as base:
        done = _cli("inspect", f"{base}/layout", "--lint")
    assert (
        done.returncode == 1
        and "web_coco: shard" in done.stdout
        and "differs from the manifest" in done.stdout
    )


def test_hub_publishing_up_to_the_network_boundary(bundled):
    assert parse_hf_url("hf://datasets/org/name") == ("org/name", None)
    assert parse_hf_url("hf://datasets/org/name@v1") == ("org/name", "v1")
    for bad in ("hf://org/name", "hf://datasets/name", "hf://datasets/a/b/c"):
        with pytest.raises(ValueError, match="hf://datasets/<org>/<name>"):
            parse_hf_url(bad)
    commits = hf_commits(bundled, plan_files(bundled))
    (_, data), (_, last) = commits
    assert [op.path_in_repo for op in last] == ["manifest.json"]  # the manifest lands in its own, last commit
    assert "manifest.json" not in {op.path_in_repo for op in data} and "README.md" in {
        op.path_in_repo for op in data
    }
    assert all(os.path.isfile(op.path_or_fileobj) for op in data)
    # the real call stops at the boundary with a clear error (HF_HUB_OFFLINE=1 in tests): nothing pretends
    done = _cli("publish", str(bundled), "--to", "hf://datasets/vlamix/samples", env={"HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2 and "HF_HUB_OFFLINE" in done.stderr and "Traceback" not in done.stderr


def test_dataset_card_front_matter_and_contents(bundled):
    import yaml

    text = (bundled / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    manifest = json.loads((bundled / "manifest.json").read_text())
    assert meta["task_categories"] == ["robotics"] and meta["license"] == "other"
    assert {c["config_name"] for c in meta["configs"]} == set(manifest["datasets"])
    for name, d in manifest["datasets"].items():
        assert f"| `{name}` | {d['kind']} " in text and f"{d['samples']:,}" in text
        if d.get("citation"):
            assert d["citation"] in text
    for reader in ("import webdataset", 'load_dataset("webdataset"', "ray.data.read_webdataset"):
        assert reader in text
