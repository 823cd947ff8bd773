"""`make bench`: every benchmark in one run on this machine, then benchmarks/RESULTS.md, results.json and
plots/. Scratch data goes to --work (git-ignored).

    python -m benchmarks.run [--only fast,stats] [--work .bench] [--out benchmarks]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks import (
    bench_fast,
    bench_ingest,
    bench_loader,
    bench_remote,
    bench_scaling,
    bench_stats,
    bench_trainer,
)
from benchmarks.common import Result
from benchmarks.profile import write_profile
from benchmarks.report import write_results

ALL = ("ingest", "fast", "loader", "trainer", "remote", "stats", "scaling")


def marginal_result(ingest: list[Result], wall: Result) -> Result:
    """Frames/s per core that each added Mobile-ALOHA frame costs from 1x to 16x (the scaling run),
    against the ingest benchmark's bound for the same frames."""
    mm = next(r for r in ingest if r.name.endswith(bench_ingest.FORMATS["mobile_aloha_sim"]))
    core_ms = wall.extra["marginal_core_ms"]
    return Result(
        "ingest",
        f"marginal frames/s per core at {bench_scaling.SCALES[-1]}x: {bench_ingest.FORMATS['mobile_aloha_sim']}",
        "frames/s",
        1e3 / core_ms,
        mm.baseline,
        mm.baseline_name,
        note=f"the whole job's cost of each frame added from 1x to {bench_scaling.SCALES[-1]}x the episodes "
        f"({core_ms:.2f} core-ms: wall time x {bench_scaling.WORKERS} workers, the driver's share included); "
        f"beside it the extract + build figure above ({1e3 / mm.ours:.2f} ms) and the whole job with its "
        "start-up",
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    p.add_argument("--work", type=Path, default=Path(".bench"), help="scratch folder (layouts, runs)")
    p.add_argument("--out", type=Path, default=Path("benchmarks"), help="where RESULTS.md etc. go")
    args = p.parse_args(argv)
    only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = sorted(set(only) - set(ALL))
    if unknown:
        p.error(f"unknown benchmarks {unknown}; known: {', '.join(ALL)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0, results, scaling = time.perf_counter(), [], []
    mm = work / "ingest" / "mobile_aloha_sim"

    def step(name: str, fn):
        if name in only:
            print(f"[{time.perf_counter() - t0:6.0f}s] {name} ...", file=sys.stderr, flush=True)
            return fn()
        return None

    ingested = step("ingest", lambda: bench_ingest.run(work))
    if ingested:
        results += ingested[0]
        write_profile(args.out, {r.name.split(": ", 1)[1]: r.extra["profile"] for r in ingested[0]})
    if not (mm / "manifest.json").is_file() and {"fast", "loader", "trainer"} & set(only):
        bench_ingest.ingest_one("mobile_aloha_sim", mm)  # the layout the next three read
    results += step("fast", lambda: bench_fast.run(mm)) or []
    results += step("loader", lambda: bench_loader.run(mm, work)) or []
    results += step("trainer", lambda: bench_trainer.run(mm, work)) or []
    results += step("remote", lambda: bench_remote.run(work)) or []
    results += step("stats", bench_stats.run) or []
    scaled = step("scaling", lambda: bench_scaling.run(work))
    if scaled:
        results += scaled[0]
        scaling = scaled[1]
        if ingested:  # the per-frame cost without the fixed start, beside the whole-job figures
            results.insert(len(ingested[0]), marginal_result(ingested[0], scaled[0][0]))
    seconds = time.perf_counter() - t0
    write_results(args.out, results, scaling, seconds)
    for r in results:
        met = {True: "ok", False: "SHORT", None: "--"}[r.met]
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "  - "
        print(f"{met:>5}  {ratio:>7}  {r.bench}: {r.name}", file=sys.stderr)
    print(f"wrote {args.out}/RESULTS.md in {seconds / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()
