"""Faults. `vlamix publish` and `vlamix train` SIGKILLed (the whole process group, dataloader workers
included) at seeded random points: re-running the same command gives exactly an uninterrupted run's
output, with no duplicate, no loss and no temp file left. Shards that fail, vanish or change under a
training run (served by a fault-injecting HTTP server on 127.0.0.1): transient errors are retried and
change nothing; the rest end the run with one line naming the shard URL, byte range and sample key,
never with a skipped sample."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import REPO
from servers import DROP, Faults, http_server, s3_server

import vlamix.sources.remote as remote_module  # the retry loop the layout Store shares
from vlamix.mixtures.resolve import resolve
from vlamix.shards.layout import WORK_DIR
from vlamix.shards.publish import plan_files
from vlamix.shards.random_access import SampleReadError
from vlamix.trainer.train import TrainOptions, train

pytestmark = pytest.mark.slow
SEEDS = (0, 1, 2)
TIMING = ("samples_per_s", "data_wait")  # wall-clock columns (and data_wait/rankN): never equal across runs


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under root, dot files (temp files) included."""
    return {p.relative_to(root).as_posix(): _sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "vlamix.cli", *args], capture_output=True, text=True, cwd=cwd
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _kill_when(args: list[str], cwd: Path, ready, timeout: float = 120, poll: float = 0.005) -> bool:
    """Start `vlamix ARGS` in its own process group and SIGKILL the whole group once `ready()` holds;
    False when the command finished first. Waits until no process of the group is left."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlamix.cli", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                return False
            assert time.monotonic() < deadline, f"the kill point of {args[0]} was never reached"
            time.sleep(poll)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _wait_group_gone(proc.pid)
    return True


def _group_alive(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc (empty where there is none)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(stat.parent.name))
    return alive


def _wait_group_gone(pgid: int) -> None:
    for _ in range(200):
        if not _group_alive(pgid):
            return
        time.sleep(0.01)
    raise AssertionError(f"processes {_group_alive(pgid)} of group {pgid} outlived SIGKILL")


# --- publish ---------------------------------------------------------------------------------------


def _done_files(dest: Path) -> list[str]:
    if not dest.is_dir():
        return []
    return [
        p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file() and not p.name.startswith(".")
    ]


def _bytes_there(dest: Path) -> int:
    """Bytes under dest, temp files included: how far a publish got."""
    total = 0
    for p in dest.rglob("*") if dest.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):  # a temp file renamed meanwhile
            total += p.stat().st_size if p.is_file() else 0
    return total


# seed 0 in `make test`, the other seeds' kill points nightly
@pytest.mark.parametrize("seed", [SEEDS[0], *(pytest.param(s, marks=pytest.mark.nightly) for s in SEEDS[1:])])
def test_publish_killed_at_random_points_resumes_to_the_same_files(bundled, tmp_path, seed):
    """Kill once a seeded share of the layout's bytes is at the destination (nearly always in the
    middle of a shard's copy, its temp file half written). Re-running the same command gives what an
    uninterrupted publish gives (the files `plan_files` lists, with their sha256, which every publish
    verifies on read-back), and nothing else; the files the killed run finished are not sent again."""
    files = plan_files(bundled)
    expected = {f.rel: f.sha256 for f in files}
    dest = tmp_path / "dest"
    target = random.Random(seed).uniform(0.02, 0.98) * sum(f.size for f in files)
    args = ["publish", str(bundled), "--to", str(dest), "--json"]

    assert _kill_when(args, REPO, lambda: _bytes_there(dest) >= target), "publish finished first"
    finished = set(_done_files(dest))  # renamed into place, so whole (their bytes are checked below)
    assert finished <= set(expected)
    if (dest / "manifest.json").exists():  # a reader who finds the manifest finds every file it names
        assert finished == set(expected)

    report = json.loads(_cli(args).stdout)

    assert _tree(dest) == expected  # the same bytes, no temp file, nothing else
    assert report["skipped"] == len(finished) and report["sent"] == len(expected) - len(finished)


# nightly: `make test` holds the resume on S3 (tests/shards/test_publish.py) and a kill of publish at a
# random point (the local case above); this re-proves the two together
@pytest.mark.nightly
def test_publish_to_s3_killed_resumes_to_the_same_objects(bundled, tmp_path):
    """The same on moto's S3 server, with --no-verify (the re-run trusts sizes): an object appears
    whole or not at all (one PUT each), so the re-run leaves exactly the layout's objects, byte for
    byte (read back here)."""
    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    files = plan_files(bundled)
    expected = {f.rel: f.sha256 for f in files}
    target = random.Random(SEEDS[0]).uniform(0.02, 0.98) * sum(f.size for f in files)
    args = ["publish", str(bundled), "--to", "s3://vlamix-kill/layout", "--json", "--no-verify"]
    with s3_server() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="vlamix-kill")

        def objects() -> dict[str, int]:
            listing = s3.list_objects_v2(Bucket="vlamix-kill", Prefix="layout/").get("Contents", [])
            return {o["Key"][len("layout/") :]: o["Size"] for o in listing}

        assert _kill_when(args, REPO, lambda: sum(objects().values()) >= target, poll=0.05)
        sizes = {f.rel: f.size for f in files}
        assert all(sizes.get(rel) == size for rel, size in objects().items())  # whole objects only
        report = json.loads(_cli(args).stdout)
        got = {
            rel: hashlib.sha256(
                s3.get_object(Bucket="vlamix-kill", Key=f"layout/{rel}")["Body"].read()
            ).hexdigest()
            for rel in objects()
        }
    assert got == expected and report["sent"] + report["skipped"] == len(expected)


# --- train ---------------------------------------------------------------------------------------

STEPS = 5


def _mixture(folder: Path, layout: str) -> Path:
    """widowx_sim (CE, with val episodes: a held-out loss) and web_coco: two small shards."""
    path = folder / "small.yaml"
    path.write_text(
        f"name: small\nstage: pretrain\nlayouts: [{layout}]\ncomponents:\n"
        "  - {dataset: widowx_sim, weight: 1}\n  - {dataset: web_coco, weight: 1}\n"
    )
    return path


TRAIN = {"steps": STEPS, "batch_size": 2, "checkpoint_every": 1, "eval_every": 2, "eval_batches": 1}


def _train_args(mixture: Path) -> list[str]:
    """`vlamix train` with TRAIN; --out is relative, so state.json (which records the options) is the
    same bytes in every run folder."""
    args = ["train", "--stage", "pretrain", "--mixture", str(mixture), "--out", "run", "--workers", "2"]
    for name, value in TRAIN.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def _run_files(run: Path) -> dict[str, str]:
    """Every file of a run folder with its sha256; metrics.csv without its wall-clock columns."""
    files = _tree(run)
    with (run / "metrics.csv").open(newline="") as f:
        rows = [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in csv.DictReader(f)]
    files["metrics.csv"] = json.dumps(rows)
    return files


@pytest.fixture(scope="module")
def reference_run(bundled, tmp_path_factory):
    """The uninterrupted run, in this process with the options the command line gives (a difference
    would show in state.json)."""
    root = tmp_path_factory.mktemp("train_ref")
    mixture = _mixture(root, str(bundled / "manifest.json"))
    cwd = Path.cwd()
    os.chdir(root)
    try:
        train(TrainOptions("pretrain", mixture, Path("run"), workers=2, **TRAIN), echo=lambda _: None)
    finally:
        os.chdir(cwd)
    return mixture, _run_files(root / "run")


def _metric_steps(run: Path) -> list[int]:
    path = run / "metrics.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [int(r[0]) for r in list(csv.reader(f))[1:] if r and len(r) > 1]


def _checkpoints(run: Path) -> list[str]:
    return (
        sorted(p.name for p in (run / "checkpoints").glob("step_*")) if (run / "checkpoints").is_dir() else []
    )


KILL_EVENTS = {  # progress order within a step: its metrics row, then its checkpoint's temp folder, then it
    "row": (0, lambda run, n: (_metric_steps(run) or [0])[-1] >= n),
    "saving": (
        1,
        lambda run, n: any((run / "checkpoints").glob(f".step_{n:06d}.tmp")) or len(_checkpoints(run)) > n,
    ),
    "saved": (2, lambda run, n: len(_checkpoints(run)) >= n),
}


def _kill_points() -> list[tuple[str, int]]:
    """One kill point per seed: an observable event of the run (metrics row n written, checkpoint n
    being saved, checkpoint n in place) at a seeded step n, in the order a run meets them."""
    events = sorted(((kind, n) for kind in KILL_EVENTS for n in range(1, STEPS)), key=_progress)
    points: list[tuple[str, int]] = []
    for seed in SEEDS:
        points.append(random.Random(seed).choice([e for e in events if e not in points]))
    return sorted(points, key=_progress)


def _progress(point: tuple[str, int]) -> tuple[int, int]:
    return point[1], KILL_EVENTS[point[0]][0]


# nightly: `make test` holds a bit-for-bit resume (tests/trainer/test_train_stages.py, two workers) and the
# torchrun resume on another world size (tests/trainer/test_distributed.py); this re-proves it after SIGKILL
@pytest.mark.nightly
def test_train_killed_at_random_points_resumes_to_the_same_run(reference_run, tmp_path):
    """Two dataloader workers, a checkpoint every step; the same command killed at every seeded point
    in turn (each re-run resumes the last one's checkpoint), then run to its end, gives the uninterrupted
    run's checkpoints (model, optimizer, state.json: the same bytes), eval.csv and metrics.csv (every
    step once, the same numbers), and no temp file."""
    mixture, expected = reference_run
    run = tmp_path / "run"
    for kind, n in _kill_points():
        event = KILL_EVENTS[kind][1]
        assert _kill_when(_train_args(mixture), tmp_path, lambda e=event, n=n: e(run, n)), (kind, n)
        steps = _metric_steps(run)  # rows past the last checkpoint stay until the re-run drops them
        assert steps == list(range(1, len(steps) + 1)), (kind, n, steps)
        assert all((run / "checkpoints" / c / "state.json").is_file() for c in _checkpoints(run))

    _cli(_train_args(mixture), cwd=tmp_path)

    got = _run_files(run)
    assert sorted(got) == sorted(expected)  # no temp folder or file left, nothing missing
    assert got == expected
    assert _metric_steps(run) == list(range(1, STEPS + 1))


# --- shards that fail, vanish or change under a training run ----------------------------------------

DAMAGED = "widowx_sim"  # its one shard is copied into the served folder (the rest are links)


@pytest.fixture
def served(bundled, tmp_path, monkeypatch):
    """The bundled layout served over HTTP with a Faults plan: every file a symlink to the bundled
    one, except DAMAGED's shard, a copy the test may delete, truncate or overwrite."""
    monkeypatch.setattr(remote_module, "BACKOFF_S", 0.01)
    monkeypatch.setenv("VLAMIX_CACHE", str(tmp_path / "cache"))
    site = tmp_path / "site" / "out"
    for path in bundled.rglob("*"):
        rel = path.relative_to(bundled)
        if path.is_file() and rel.parts[0] != WORK_DIR:
            (site / rel).parent.mkdir(parents=True, exist_ok=True)
            (site / rel).symlink_to(path)
    manifest = json.loads((bundled / "manifest.json").read_text())
    shard = manifest["datasets"][DAMAGED]["shards"][0]["path"]
    (site / shard).unlink()
    shutil.copyfile(bundled / shard, site / shard)
    faults = Faults()
    with http_server(site.parent, faults) as url:
        yield {
            "url": url,
            "faults": faults,
            "shard": site / shard,
            "path": f"/out/{shard}",
            "mixture": _mixture(tmp_path, f"{url}/out/manifest.json"),
        }


def _opts(served: dict, out: Path, **kw) -> TrainOptions:
    """A run from the served layout through a shard cache of its own that holds no shard beyond the
    batch being read: every batch fetches its shards again, so the server sees every batch."""
    base = {"steps": 4, "batch_size": 2, "workers": 0, "eval_batches": 0, "checkpoint_every": 100}
    base |= {"cache": out.with_name(out.name + "-cache"), "cache_limit": 1}
    return TrainOptions("pretrain", served["mixture"], out, **{**base, **kw})


def _rows(out: Path) -> list[dict]:
    with (out / "metrics.csv").open(newline="") as f:
        return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in csv.DictReader(f)]


def _at_step(n: int, action):
    def progress(step: int, row: dict) -> None:
        if step == n:
            action()

    return progress


def test_transient_server_errors_are_retried_and_change_nothing(served, tmp_path):
    """500s and dropped connections on the two shards' fetches: the fetches are retried (the server
    saw them), and the run equals one that met no error, bit for bit."""
    faults, path = served["faults"], served["path"]
    train(_opts(served, tmp_path / "clean"), echo=lambda _: None)

    web = f"/out/{_web_shard(served)}"
    faults.fail_next(path, 2, 500, gets=True)
    faults.fail_next(web, 1, DROP, gets=True)
    before = faults.requests[path]
    train(_opts(served, tmp_path / "faulty"), echo=lambda _: None)
    assert faults.pending(path) == faults.pending(web) == 0  # every armed failure was met ...
    assert faults.requests[path] - before >= 3  # ... and the fetch tried again
    assert _rows(tmp_path / "faulty") == _rows(tmp_path / "clean")
    a, b = (p / "checkpoints" / "step_000004" / "model.pt" for p in (tmp_path / "clean", tmp_path / "faulty"))
    assert a.read_bytes() == b.read_bytes()


def _web_shard(served: dict) -> str:
    manifest = json.loads(served["shard"].parents[2].joinpath("manifest.json").read_text())
    return manifest["datasets"]["web_coco"]["shards"][0]["path"]


def _fails_after(served: dict, out: Path, damage, workers: int = 0) -> str:
    """Train, apply `damage` after step 2, and return the error the run ended with (checked to be one
    line naming the shard's URL and a sample of DAMAGED that needed it); the metrics hold only the
    steps before it, each once: no batch was built without the sample."""
    with pytest.raises(SampleReadError) as err:
        train(
            _opts(served, out, steps=30, workers=workers), progress=_at_step(2, damage), echo=lambda _: None
        )
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{served['url']}{served['path']}: "), message
    assert f"sample {DAMAGED}/" in message, message
    steps = [int(r["step"]) for r in _rows(out)]
    assert steps == list(range(1, len(steps) + 1)) and 2 <= len(steps) < 30
    return message


def test_server_errors_past_the_retries_end_the_run_with_one_line(served, tmp_path):
    """With two dataloader workers: the error comes back from the worker as the same one line."""
    message = _fails_after(
        served, tmp_path / "run", lambda: served["faults"].fail_next(served["path"], 99, 503, gets=True), 2
    )
    assert "HTTP 503" in message and "after 4 attempts" in message


def test_a_shard_deleted_mid_training_is_a_404_error(served, tmp_path):
    message = _fails_after(served, tmp_path / "run", served["shard"].unlink)
    assert "not found" in message and "re-publish" in message
    with pytest.raises(ValueError, match=f"shard {served['path'][5:]} is missing"):
        train(_opts(served, tmp_path / "again"), echo=lambda _: None)  # a new run stops before step 1


def test_a_shard_truncated_mid_training_is_an_error_and_a_start_check(served, tmp_path):
    def truncate() -> None:
        with served["shard"].open("r+b") as f:
            f.truncate(4096)

    message = _fails_after(served, tmp_path / "run", truncate)
    assert "fetched 4096 bytes" in message and "the manifest says" in message, message
    with pytest.raises(ValueError, match="is 4096 bytes, its manifest says"):
        train(_opts(served, tmp_path / "run"), echo=lambda _: None)  # the resume stops before its first step


def test_bytes_overwritten_mid_training_fail_the_sha256_or_the_crc32(served, tmp_path):
    """Same size, other bytes inside every sample's first member's data (a tar header checksum does
    not cover them): fetched over HTTP, the manifest's sha256 of the shard tells; read in place from
    the folder, the index's crc32 of the sample does."""
    rows = pq.read_table(served["shard"].parents[2] / "index" / f"{DAMAGED}.parquet").to_pylist()

    def overwrite() -> None:
        with served["shard"].open("r+b") as f:
            for r in rows:
                f.seek(r["offset"] + 512 + 16)
                byte = f.read(1)
                f.seek(-1, 1)
                f.write(bytes([byte[0] ^ 0xFF]))

    message = _fails_after(served, tmp_path / "run", overwrite)
    assert "sha256" in message and "changed on the server" in message, message
    overwrite()  # back to the published bytes
    (tmp_path / "local").mkdir()
    local = _mixture(tmp_path / "local", str(served["shard"].parents[2] / "manifest.json"))
    in_place = {"steps": 30, "batch_size": 2, "workers": 0, "eval_batches": 0}
    with pytest.raises(SampleReadError) as err:
        train(
            TrainOptions("pretrain", local, tmp_path / "in_place", **in_place),
            progress=_at_step(2, overwrite),
            echo=lambda _: None,
        )
    message = str(err.value)
    assert message.startswith(f"{served['shard']} bytes ") and f"(sample {DAMAGED}/" in message, message
    assert "crc32" in message and "differs from the index's" in message


def test_a_layout_indexed_before_the_crc32_column_still_trains(served, tmp_path):
    """An index without `crc32` (older layouts) stays readable: size checks only, said once."""
    index = served["shard"].parents[2] / "index" / f"{DAMAGED}.parquet"
    table = pq.read_table(index)
    index.unlink()  # a symlink to the bundled index: replaced, not written through
    pq.write_table(table.drop(["crc32"]), index)
    assert "no crc32 in the index of widowx_sim" in " ".join(resolve(served["mixture"]).warnings)
    said: list[str] = []
    train(_opts(served, tmp_path / "run", steps=2), echo=said.append)
    assert any("no crc32 in the index of widowx_sim" in line for line in said)


def test_the_cli_exits_non_zero_with_one_line_when_a_worker_cannot_read(served, tmp_path):
    """Every fetch of the damaged shard answers 503 (its HEAD and the indexes still answer): the
    command, with two dataloader workers, retries, then exits 2 with the one line, no traceback."""
    served["faults"].fail_next(served["path"], 10_000, 503, gets=True)
    done = subprocess.run(
        [sys.executable, "-m", "vlamix.cli", *_train_args(served["mixture"])],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "VLAMIX_CACHE": str(tmp_path / "cache")},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and f"{served['url']}{served['path']}: " in error[0], done.stderr[-2000:]
    assert f"sample {DAMAGED}/" in error[0] and "HTTP 503" in error[0] and "after 4 attempts" in error[0]
    steps = _metric_steps(tmp_path / "run")
    assert steps == list(range(1, len(steps) + 1)) and len(steps) < STEPS  # no step without its samples
