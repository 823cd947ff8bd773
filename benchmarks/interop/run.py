"""`make interop-check`: every robot dataset of a layout exported with `vlamix export lerobot`, then loaded by
LeRobot's own `LeRobotDataset` (lerobot 0.4.4, in .venv-peers) and compared, on a seeded sample of frames,
with the layout's frame records: state and action (float32, exactly), task and subtask per frame, and each
camera's per-channel mean (the video is lossy). Results: benchmarks/interop/results.json and RESULTS.md.

lerobot 0.4.x is the last line on Python 3.11, and it predates LeRobot's language columns (0.6): a dataset
with subtask labels exports with `--language subtask-index` (0.4's own form), one with verbal instructions
with `--language none`, and the language columns are checked in `make test` (pyarrow, Hugging Face
`datasets`) instead.

    python -m benchmarks.interop.run --layout out --work .bench/interop --out benchmarks/interop \
        --peers-python .venv-peers/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from vlamix.exports.layout_source import open_layout
from vlamix.exports.lerobot_export import ExportOptions, export_one
from vlamix.exports.lerobot_language import language_of
from vlamix.schemas.frame import ROBOT_KINDS, image_column
from vlamix.schemas.image_codec import decode_jpeg

CHANNEL_TOLERANCE = 3.0  # per-channel mean, 0-255, after h264 at crf 23
HERE = Path(__file__).resolve().parent


def _language(data) -> str:
    if data.spans["VI"]:
        return "none"
    return "subtask-index" if data.spans["HL"] else "columns"


def _expect(data, summary: dict, frames: int, seed: int, language: str) -> dict:
    rng = np.random.default_rng(seed)
    total = summary["frames"]
    picks = sorted(set(rng.choice(total, size=min(frames, total), replace=False).tolist()))
    out, start = {}, 0
    for ep in data.episodes:
        mine = [i - start for i in picks if start <= i < start + ep.frames]
        if mine:
            table = data.frames(ep)
            lang = language_of(
                ep.frames,
                data.spans["HL"].get(ep.episode, ()),
                (),
                table.column("subtask").to_pylist(),
                [None] * ep.frames,
            )
            rows = table.to_pylist()
            for f in mine:
                r = rows[f]
                means = {}
                for key, slot in summary["camera_slots"]:
                    img = decode_jpeg(r[image_column(slot)]).astype(np.float64)
                    means[key] = img.mean(axis=(0, 1)).tolist()
                out[str(start + f)] = {
                    "state": r["state"],
                    "action": r["action"],
                    "task": r["task"],
                    "subtask": lang.subtask[f] if language == "subtask-index" else None,
                    "image_mean": means,
                }
        start += ep.frames
    tasks = sorted({t for ep in data.episodes for t in data.frames(ep, ["task"]).column("task").to_pylist()})
    return {"frames": out, "episodes": len(data.episodes), "frames_total": total, "tasks": tasks}


def _verdict(r: dict) -> bool:
    return (
        "error" not in r
        and r["episodes"] == r["episodes_expected"]
        and r["frames"] == r["frames_expected"]
        and r["tasks_equal"]
        and r["task_per_frame_equal"]
        and r["subtask_per_frame_equal"]
        and r["max_abs_state"] == 0.0
        and r["max_abs_action"] == 0.0
        and r["max_abs_channel_mean"] < CHANNEL_TOLERANCE
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layout", type=Path, default=Path("out"))
    p.add_argument("--work", type=Path, default=Path(".bench/interop"))
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--peers-python", default=".venv-peers/bin/python")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    layout = open_layout(args.layout)
    names = [n for n, e in sorted(layout.manifest["datasets"].items()) if e["kind"] in ROBOT_KINDS]
    results = {}
    for name in names:
        data = layout.robot(name)
        language = _language(data)
        summary = export_one(layout, name, str(args.work), ExportOptions(language=language, overwrite=True))
        from vlamix.exports.lerobot_plan import plan_export

        plan = plan_export(data, "h264", language, False)
        summary["camera_slots"] = list(plan.cameras)
        expect = args.work / f"{name}.expect.json"
        expect.write_text(json.dumps(_expect(data, summary, args.frames, args.seed, plan.language)))
        done = subprocess.run(
            [
                args.peers_python,
                str(HERE / "lerobot_check.py"),
                "--root",
                str(args.work / name),
                "--expect",
                str(expect),
            ],
            capture_output=True,
            text=True,
        )
        line = (done.stdout.strip().splitlines() or ['{"error": "no output"}'])[-1]
        r = json.loads(line) | {"language": plan.language}
        if done.returncode and "error" not in r:
            r["error"] = done.stderr[-500:]
        r["pass"] = _verdict(r)
        results[name] = r
        print(f"{name}: {'ok' if r['pass'] else 'FAILED'} {json.dumps(r)}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    version = next((r["lerobot"] for r in results.values() if "lerobot" in r), "?")
    lines = [
        "# interop-check: vlamix exports loaded by LeRobot's own `LeRobotDataset`",
        "",
        f"lerobot {version} (.venv-peers), `video_backend=pyav`; {args.frames} seeded frames per dataset "
        f"(seed {args.seed}); state and action must be equal (float32), the per-channel image mean within "
        f"{CHANNEL_TOLERANCE} of 255. Written by `make interop-check` (benchmarks/interop/run.py).",
        "",
        "| dataset | language | episodes | frames | frames checked | max abs state | max abs action | max channel-mean diff | tasks | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | {r['language']} | | | | | | | | error: {r['error'][:120]} |")
            continue
        lines.append(
            f"| {name} | {r['language']} | {r['episodes']} | {r['frames']} | {r['frames_checked']} | "
            f"{r['max_abs_state']:g} | {r['max_abs_action']:g} | {r['max_abs_channel_mean']:.2f} | "
            f"{'equal' if r['tasks_equal'] and r['task_per_frame_equal'] else 'DIFFER'} | {'pass' if r['pass'] else 'FAIL'} |"
        )
    (args.out / "RESULTS.md").write_text("\n".join(lines) + "\n")
    if not all(r["pass"] for r in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
