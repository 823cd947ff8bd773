"""The results of a `make bench` run: RESULTS.md (a table), results.json and PNG plots."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.common import Result

GOALS = {
    "loader": ">= 0.9 of the tar-read + JPEG-decode bound at 0 and 2 workers (and >= 8x LeRobotDataset: "
    "`make bench-peers`)",
    "ingest": ">= 1.0 of the naive bound per format at 480x640, one worker (0.6 the floor); the per-stage "
    "profile in PROFILE.md",
    "fast": "encode >= 3x the per-chunk reference, identical tokens",
    "stats": "exact, and >= 3x faster than the running histogram",
    "trainer": "data wait < 2% of step time",
    "scaling": "linear time (ratio >= 1), flat memory (peak 16x within 1.1x of 1x: ratio >= 0.91)",
}


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    if x == 0 or 0.01 <= abs(x) < 100_000:
        return f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"
    return f"{x:.2e}"


def _machine() -> str:
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"


def write_results(out: Path, results: list[Result], scaling: list[dict], seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    data = {
        "machine": _machine(),
        "seconds": round(seconds, 1),
        "results": [r.to_json() for r in results],
        "scaling": scaling,
    }
    (out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [
        "# Benchmark results",
        "",
        f"`make bench` on {_machine()}, {seconds / 60:.1f} minutes. Every ratio is ours against a baseline "
        "measured in the same run on the same data (higher is better); absolute numbers are for orientation "
        "only. Goals of the project in the last column.",
        "",
        "| bench | figure | ours | baseline | ratio | goal met |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        base = f"{_fmt(r.baseline)} ({r.baseline_name})" if r.baseline is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[r.met]
        goal = f"{r.goal:g}" if r.goal is not None else (f"<= {r.ceiling:g}" if r.ceiling is not None else "")
        lines.append(
            f"| {r.bench} | {r.name} | {_fmt(r.ours)} {r.unit} | {base} | {_fmt(r.ratio)} | "
            f"{met + (' (' + goal + ')' if goal else '')} |"
        )
    lines += ["", "## Notes", ""]
    lines += [f"- **{r.bench} / {r.name}**: {r.note}" for r in results if r.note]
    lines += ["", "## Goals", ""] + [f"- {k}: {v}" for k, v in GOALS.items()]
    lines += ["", "Plots: `plots/ratios.png`, `plots/scaling.png`. Why a figure falls short: README.md.", ""]
    (out / "RESULTS.md").write_text("\n".join(lines))
    _plot_ratios(out / "plots" / "ratios.png", results)
    if scaling:
        _plot_scaling(out / "plots" / "scaling.png", scaling)


def _plot_ratios(path: Path, results: list[Result]) -> None:
    rows = [r for r in results if r.ratio is not None]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    names = [f"{r.bench}: {r.name}"[:60] for r in rows]
    colors = ["tab:green" if r.met else "tab:red" if r.met is False else "tab:gray" for r in rows]
    ax.barh(names, [r.ratio for r in rows], color=colors)
    for i, r in enumerate(rows):
        if r.goal is not None:
            ax.plot([r.goal, r.goal], [i - 0.4, i + 0.4], color="black")
    ax.set_xscale("log")
    ax.axvline(1.0, color="gray", lw=0.8, ls="--")
    ax.invert_yaxis()
    ax.set_xlabel("ours / baseline (higher is better; black tick: goal)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_scaling(path: Path, points: list[dict]) -> None:
    frames = [p["frames"] for p in points]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(frames, [p["wall_s"] for p in points], "o-", label="measured")
    k = points[0]["wall_s"] / frames[0]
    a.plot(frames, [k * f for f in frames], ":", color="gray", label="linear from 1x")
    a.set_xlabel("frames")
    a.set_ylabel("ingest wall time (s)")
    a.legend()
    b.plot(frames, [p["max_process_rss_mib"] for p in points], "o-", label="largest process")
    b.plot(frames, [p["driver_peak_rss_mib"] for p in points], "s-", label="driver")
    b.set_ylim(0, max(p["max_process_rss_mib"] for p in points) * 1.3)
    b.set_xlabel("frames")
    b.set_ylabel("peak RSS (MiB)")
    b.legend()
    fig.suptitle("vlamix ingest at 1x, 4x, 16x the Mobile-ALOHA samples (2 workers)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
