"""`make bench-scale`: a generated Mobile-ALOHA dataset served from an S3 server on 127.0.0.1 (moto),
ingested from its `s3://` URL at 1x, 4x and 16x (16x holds at least 100,000 frames) with Ray on a
two-node local cluster and with Beam. Per run: wall time, frames/s, the driver's peak memory, the largest
worker's peak memory; at 16x the statistics are checked against numpy over every value. Results go to
`benchmarks/scale/` (results.json, RESULTS.md). The issue's bar: the driver's peak memory grows at most
10% from 1x to 16x.

    python -m benchmarks.scale [--base-episodes 10] [--scales 1,4,16] [--engines beam,ray]"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

from benchmarks.bench_scaling import episodes
from vlamix.shards.store import Store

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
BUCKET = "vlamix-scale"
DATASET = "mm_scale"
# Runs the ingest as a child and prints its own peak RSS (the driver; Beam's workers are its children).
_WRAP = (
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)"
)


class PeakRSS:
    """Samples, every `every` seconds, the resident memory of every process under the given roots
    (the ingest driver, the Ray nodes), and keeps each process's peak: the driver's and the largest
    other process's (a worker's) peak are what the benchmark reports."""

    def __init__(self, every: float = 0.25):
        self.every, self.roots, self.peaks = every, [], {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, pid: int) -> None:
        self.roots.append(pid)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for root in list(self.roots):
                with contextlib.suppress(psutil.Error):
                    top = psutil.Process(root)
                    for p in [top, *top.children(recursive=True)]:
                        with contextlib.suppress(psutil.Error):
                            rss = p.memory_info().rss
                            key = (root, p.pid, " ".join(p.cmdline()[:4]))
                            self.peaks[key] = max(self.peaks.get(key, 0), rss)

    def take(self, roots: list[int], keep) -> float:
        """The largest peak (MiB) of the processes under `roots` that `keep(pid, cmdline)` accepts."""
        vals = [v for (r, pid, name), v in self.peaks.items() if r in roots and keep(pid, name)]
        return max(vals, default=0) / 2**20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def s3_server():
    """moto's S3 server on 127.0.0.1 with the AWS variables pointing at it (test credentials)."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(env)
    try:
        yield env["AWS_ENDPOINT_URL_S3"]
    finally:
        server.stop()


@contextlib.contextmanager
def ray_cluster(peaks: PeakRSS):
    """A head and a worker node (`ray start --block`, one CPU each) in their own process groups."""
    ray = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    address = f"127.0.0.1:{_free_port()}"
    common = ["--block", "--num-cpus=1", "--disable-usage-stats"]
    procs = []
    from vlamix.pipelines.ray_jobs import ray_address_file

    recorded = ray_address_file()  # `ray start` records its cluster here: put back as it was, after
    before = recorded.read_bytes() if recorded.is_file() else None
    try:
        head = [
            ray,
            "start",
            "--head",
            f"--port={address.split(':')[1]}",
            "--include-dashboard=false",
            *common,
        ]
        procs.append(
            subprocess.Popen(
                head, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
        )
        _wait_for_nodes(address, 1, env)
        procs.append(
            subprocess.Popen(
                [ray, "start", f"--address={address}", *common],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        _wait_for_nodes(address, 2, env)
        for p in procs:
            peaks.watch(p.pid)
        yield address
    finally:
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
        if before is None:
            recorded.unlink(missing_ok=True)
        else:
            recorded.write_bytes(before)


def _wait_for_nodes(address: str, n: int, env: dict, timeout: float = 180.0) -> None:
    probe = f"import ray; ray.init(address={address!r}, log_to_driver=False); print(len([x for x in ray.nodes() if x['Alive']]))"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
        )
        if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        time.sleep(2)
    raise TimeoutError(f"the Ray cluster at {address} did not reach {n} nodes")


def _sources(folder: Path, url: str) -> Path:
    spec = yaml.safe_load((SAMPLES / "sources.yaml").read_text())
    entry = next(d for d in spec["datasets"] if d["name"] == "mobile_aloha_sim")
    entry.update(name=DATASET, path=url)
    path = folder / f"{url.rsplit('/', 1)[-1]}.yaml"
    path.write_text(yaml.safe_dump({"datasets": [entry]}))
    return path


def _run(
    engine: str, sources: Path, out: Path, address: str | None, peaks: PeakRSS, extra: list[str]
) -> dict:
    cmd = [sys.executable, "-m", "vlamix.cli", "ingest", "--sources", str(sources), "--out", str(out)]
    cmd += ["--workers", "2", "--fresh", "--json", *extra]
    if engine == "ray":
        cmd += ["--engine", "ray", "--ray-address", address]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRAP, *cmd],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    peaks.watch(proc.pid)
    _, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} ingest of {sources} failed: {stderr[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    report = json.loads((out / "reports" / "ingest.json").read_text())
    frames = manifest["datasets"][DATASET]["accounting"]["frames_written"]
    peaks.roots.remove(proc.pid)
    is_driver = lambda pid, name: "vlamix.cli ingest" in name  # noqa: E731
    driver_mib = peaks.take([proc.pid], is_driver)
    if engine == "ray":  # Ray's task workers (`ray::...`) on both nodes
        workers = peaks.take(peaks.roots, lambda pid, name: name.startswith("ray::"))
    else:  # Beam's worker processes: the driver's children
        workers = peaks.take([proc.pid], lambda pid, name: pid != proc.pid and not is_driver(pid, name))
    peaks.peaks.clear()
    return {
        "engine": engine,
        "frames": frames,
        "episodes": manifest["datasets"][DATASET]["accounting"]["written"],
        "wall_s": round(wall, 1),
        "frames_per_s": round(frames / wall, 1),
        "driver_peak_rss_mib": round(driver_mib, 1),
        "worker_peak_rss_mib": round(workers, 1),
        "steps_seconds": report.get("steps_seconds"),
        "driver_peak_rss_mib_after_step": report.get("driver_peak_rss_mib_after_step"),
    }


def _check_stats(out: Path) -> dict:
    """The layout's statistics against numpy's over every value the stats step saw (the frames in
    `work/frames`, through the same stats chain)."""
    import polars as pl

    from vlamix.schemas.embodiment import load_embodiment
    from vlamix.shards.workdir import WorkDir
    from vlamix.transforms.chain import apply, stats_chain
    from vlamix.transforms.stats import PERCENTILES

    emb = load_embodiment("mobile_aloha")
    chain = stats_chain(emb)
    stats = json.loads((out / "stats" / f"{DATASET}.json").read_text())
    states, actions = [], []
    for rel in sorted(Store(str(out)).glob(f"{WorkDir.frames(DATASET)}/*.parquet")):
        df = pl.read_parquet(out / rel, columns=["state", "action"])
        state, action = (
            np.asarray(df["state"].to_list(), np.float32),
            np.asarray(df["action"].to_list(), np.float32),
        )
        o = apply(chain, {"state": state, "episode_actions": action, "frame": np.arange(len(state))})
        states.append(o["state"])
        actions.append(o["actions"].reshape(-1, emb.action_dim))
    checks = {}
    for part, rows in (("state", states), ("actions", actions)):
        x = np.concatenate(rows).astype(np.float64)
        q = np.percentile(x, PERCENTILES, axis=0)
        got = np.asarray([stats[part][f"q{p:02d}"] for p in PERCENTILES])
        checks[part] = {
            "values_per_dim": len(x),
            "percentiles_equal": bool(np.array_equal(got, q.astype(np.float32).astype(np.float64))),
            "min_max_equal": bool(
                np.array_equal(stats[part]["min"], x.min(0).astype(np.float32))
                and np.array_equal(stats[part]["max"], x.max(0).astype(np.float32))
            ),
            "mean_max_rel_err": float(
                np.max(np.abs(np.asarray(stats[part]["mean"]) - x.mean(0)) / (np.abs(x.mean(0)) + 1e-12))
            ),
            "subsampled": bool(stats.get("subsampled")),
        }
    return checks


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path(".bench/scale"))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "scale")
    p.add_argument("--base-episodes", type=int, default=10, help="episodes at 1x (645 frames each)")
    p.add_argument("--scales", default="1,4,16")
    p.add_argument("--engines", default="beam,ray")
    p.add_argument(
        "--fast-fit-chunks",
        type=int,
        default=None,
        help="passed to the ingest: with a cap every scale reaches, the FAST fit's sample (which grows "
        "with the frames up to the cap, 20,000 by default) is the same size at every scale",
    )
    args = p.parse_args(argv)
    scales = [int(s) for s in args.scales.split(",")]
    engines = args.engines.split(",")
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    t0 = time.perf_counter()
    runs = []
    import fsspec

    with s3_server() as endpoint, PeakRSS() as peaks:
        fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint})
        fs.mkdir(BUCKET)
        for scale in scales:  # the bundled 3 episodes copied k times with their state nudged (no duplicates)
            eps = episodes(args.work / "episodes", -(-scale * args.base_episodes // 3))
            files = sorted(eps.glob("*.hdf5"), key=lambda f: int(f.stem.split("_")[1]))[
                : scale * args.base_episodes
            ]
            for f in files:
                fs.put_file(str(f), f"{BUCKET}/mm_{scale}x/{f.name}")
            shutil.rmtree(eps)
        cluster = ray_cluster(peaks) if "ray" in engines else contextlib.nullcontext()
        with cluster as address:
            for engine in engines:
                for scale in scales:
                    sources = _sources(args.work, f"s3://{BUCKET}/mm_{scale}x")
                    out = args.work / "layouts" / f"{engine}_{scale}x"
                    extra = (
                        []
                        if args.fast_fit_chunks is None
                        else ["--fast-fit-chunks", str(args.fast_fit_chunks)]
                    )
                    run = {"scale": scale, **_run(engine, sources, out, address, peaks, extra)}
                    if scale == scales[-1]:
                        run["stats_check"] = _check_stats(out)
                    print(json.dumps(run), flush=True)
                    runs.append(run)
                    if scale != scales[-1]:
                        shutil.rmtree(out)
    _write(args.out, runs, scales, time.perf_counter() - t0, args.fast_fit_chunks)


def _write(out: Path, runs: list[dict], scales: list[int], seconds: float, fit_cap: int | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"
    growth = {}
    for engine in sorted({r["engine"] for r in runs}):
        first = next(r for r in runs if r["engine"] == engine and r["scale"] == scales[0])
        last = next(r for r in runs if r["engine"] == engine and r["scale"] == scales[-1])
        growth[engine] = round(last["driver_peak_rss_mib"] / first["driver_peak_rss_mib"], 3)
    data = {
        "machine": machine,
        "seconds": round(seconds, 1),
        "fast_fit_chunks": fit_cap,
        "driver_peak_growth": growth,
        "runs": runs,
    }
    (out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [
        "# Scale benchmark",
        "",
        f"`make bench-scale` on {machine}, {seconds / 60:.1f} minutes: a generated Mobile-ALOHA dataset (3 cameras, "
        "160x120) in moto's S3 server on 127.0.0.1, ingested from its `s3://` URL (`--workers 2`; Ray on a "
        "two-node local cluster, one CPU per node). Memory is the peak resident set, sampled every 0.25 s. "
        + ("`--fast-fit-chunks` default (20,000)." if fit_cap is None else f"`--fast-fit-chunks {fit_cap}`."),
        "",
        "| engine | scale | episodes | frames | wall s | frames/s | driver peak MiB | largest worker MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['engine']} | {r['scale']}x | {r['episodes']} | {r['frames']:,} | {r['wall_s']} | "
            f"{r['frames_per_s']} | {r['driver_peak_rss_mib']} | {r['worker_peak_rss_mib']} |"
        )
    lines += ["", "Driver peak memory, largest scale over smallest (the bar is at most 1.10):", ""]
    lines += [f"- {e}: {g}x {'(met)' if g <= 1.10 else '(**not met**)'}" for e, g in growth.items()]
    lines += ["", "The driver's peak after each step (MiB):", ""]
    for r in runs:
        if r.get("driver_peak_rss_mib_after_step"):
            steps = ", ".join(f"{k} {v:.0f}" for k, v in r["driver_peak_rss_mib_after_step"].items())
            lines.append(f"- {r['engine']} {r['scale']}x: {steps}")
    lines += ["", "Statistics at the largest scale against numpy over every value:", ""]
    for r in runs:
        if "stats_check" in r:
            for part, c in r["stats_check"].items():
                lines.append(
                    f"- {r['engine']} {part}: {c['values_per_dim']:,} values per dim, percentiles equal: "
                    f"{c['percentiles_equal']}, min/max equal: {c['min_max_equal']}, mean max rel. error "
                    f"{c['mean_max_rel_err']:.1e}, subsampled: {c['subsampled']}"
                )
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
