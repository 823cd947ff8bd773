"""The ingest's per-stage profile: for each format, ms per frame in every stage of the extract and build
steps (read, decode, resize, encode, frame parquet, gates, chain, assembly, spill, tar write), from the
stage clocks of the job itself (vlamix/stage_clock.py, summed by the report), plus

- "in units, no stage": the units' own time that no stage covers (loops, generators, bookkeeping);
- "engine overhead": the steps' wall time outside the units (the engine's start, planning, moving units
  and results, the driver's listing and writing of outcomes).

The rows add up to the steps' measured wall time by construction; what the clocks name is shown as
`covered`: the named stages plus the engine overhead, which is measured on its own (a step's wall time
less its units' wall time), as a share of the total. Written to PROFILE.md and profile.json."""

from __future__ import annotations

import json
from pathlib import Path

from vlamix.stage_clock import STAGES

__all__ = ["profile_of", "write_profile"]

STEPS = ("extract", "build")
UNSTAGED, ENGINE = "in units, no stage", "engine overhead"


def profile_of(report: dict, frames: int) -> dict:
    """ms per frame per stage of one `vlamix ingest --workers 1` run, from its reports/ingest.json."""
    seconds = {k: 0.0 for k in (*STAGES, UNSTAGED, ENGINE)}
    total = work = 0.0
    for step in STEPS:
        figures = report["progress"][step]
        total += report["steps_seconds"][step]
        work += figures["work_s"]
        for name, s in figures["stages_s"].items():
            seconds[name] += s
    staged = sum(seconds[k] for k in STAGES)
    seconds[UNSTAGED] = max(work - staged, 0.0)
    seconds[ENGINE] = max(total - work, 0.0)
    ms = {k: 1e3 * v / frames for k, v in seconds.items()}
    return {
        "frames": frames,
        "total_ms": 1e3 * total / frames,
        "ms_per_frame": ms,
        "sum_ms": sum(ms.values()),
        "covered": (staged + seconds[ENGINE]) / total if total else 0.0,
    }


def write_profile(out: Path, profiles: dict[str, dict]) -> None:
    """PROFILE.md (a table: stages down, formats across) and profile.json under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(profiles, indent=2) + "\n")
    names = list(profiles)
    lines = [
        "# Ingest profile: where every millisecond of a frame goes",
        "",
        "`make bench`, one worker, frames at 480x640 (benchmarks/frames480.py): ms per frame (all of its "
        "cameras) in each stage of the extract and build steps, from the job's own stage clocks "
        "(`reports/ingest.json`, `progress.<step>.stages_s`). How the rows are measured: "
        "benchmarks/profile.py.",
        "",
        "| stage | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for stage in (*STAGES, UNSTAGED, ENGINE):
        lines.append(
            f"| {stage} | " + " | ".join(f"{profiles[n]['ms_per_frame'][stage]:.3f}" for n in names) + " |"
        )
    lines.append(
        "| **sum of the rows** | " + " | ".join(f"{profiles[n]['sum_ms']:.2f}" for n in names) + " |"
    )
    lines.append(
        "| **measured total** | " + " | ".join(f"{profiles[n]['total_ms']:.2f}" for n in names) + " |"
    )
    lines.append(
        "| named stages + engine, share of the total | "
        + " | ".join(f"{profiles[n]['covered']:.0%}" for n in names)
        + " |"
    )
    lines += ["", "Frames per format: " + ", ".join(f"{n} {profiles[n]['frames']}" for n in names) + ".", ""]
    (out / "PROFILE.md").write_text("\n".join(lines))
