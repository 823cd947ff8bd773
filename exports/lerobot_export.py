"""`vlamix export lerobot`: robot datasets of a layout as LeRobot v3.0 datasets, one folder per dataset.

- Atomic: a dataset is built in a staging folder named by its plan's fingerprint (`DIR/.NAME.partial-FP` for
  a local destination, `LAYOUT/work/export/NAME-FP` for a URL) and appears whole: renamed into place
  locally; at a URL every file is uploaded with `meta/info.json` last (LeRobot's loader starts there).
- Resumable: a file group is written under temporary names, renamed, then marked done
  (`.progress/group-N.json`); a re-run of the same command skips the marked groups, and an export already
  at the destination with the same fingerprint is left as it is (`unchanged` in the summary). A re-run
  with other options or a re-ingested layout (another fingerprint) starts afresh; an existing export of
  another fingerprint is replaced only with `--overwrite`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlamix.exports.layout_source import ExportError, Layout, RobotData
from vlamix.exports.lerobot_files import write_group
from vlamix.exports.lerobot_meta import INFO, PROVENANCE, write_meta
from vlamix.exports.lerobot_plan import FRAMES_PER_FILE, ExportPlan, plan_export
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir

__all__ = ["ExportOptions", "export_lerobot"]

Progress = Callable[[str, int, int], None]  # (dataset, frames done, frames in all)


@dataclass(frozen=True)
class ExportOptions:
    codec: str = "h264"
    language: str = "columns"
    gr00t: bool = False
    frames_per_file: int = FRAMES_PER_FILE
    overwrite: bool = False


def _is_url(to: str) -> bool:
    return "://" in to and not to.startswith("file://")


def _fingerprint_at(store: Store, rel: str) -> str | None:
    try:
        return json.loads(store.read_text(rel))["fingerprint"]
    except FileNotFoundError:
        return None


def _build(data: RobotData, plan: ExportPlan, staging: Path, progress: Progress | None) -> tuple[dict, int]:
    """Every group (resuming at the first unmarked one), then the meta files. Returns (info, groups reused)."""
    marks = staging / ".progress"
    marks.mkdir(parents=True, exist_ok=True)
    markers, reused, done = [], 0, 0
    for g in plan.groups:
        mark = marks / f"group-{g.number:06d}.json"
        if mark.exists():
            marker = json.loads(mark.read_text())
            reused += 1
        else:
            marker = write_group(data, plan, g, staging)
            tmp = mark.with_name(mark.name + ".partial")
            tmp.write_text(json.dumps(marker))
            tmp.replace(mark)
        markers.append(marker)
        done += marker["frames"]
        if progress:
            progress(data.name, done, plan.frames)
    provenance = {
        "fingerprint": plan.fingerprint(),
        "layout": data.store.url,
        "dataset": data.name,
        "codec": plan.codec,
        "language": plan.language,
        "gr00t": plan.gr00t,
        "annotations": data.annotators,
    }
    info = write_meta(data, plan, staging, markers, provenance)
    shutil.rmtree(marks)
    return info, reused


def _upload(staging: Path, dest: Store) -> None:
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    last = staging / INFO
    for path in [*(p for p in files if p != last), last]:
        rel = path.relative_to(staging).as_posix()
        if path != last and dest.size(rel) == path.stat().st_size:
            continue  # sent by a run that was cut off: files of one fingerprint are equal
        dest.put_file(path, rel)


def export_one(
    layout: Layout, name: str, to: str, opts: ExportOptions, progress: Progress | None = None
) -> dict:
    data = layout.robot(name)
    plan = plan_export(data, opts.codec, opts.language, opts.gr00t, opts.frames_per_file)
    fp = plan.fingerprint()
    dest_url = f"{to.rstrip('/')}/{name}"
    dest = Store(dest_url)
    existing = _fingerprint_at(dest, PROVENANCE) if dest.exists(INFO) else None
    summary = {
        "to": dest_url,
        "episodes": len(data.episodes),
        "frames": plan.frames,
        "tasks": len(plan.tasks),
        "files": len(plan.groups),
        "videos": len(plan.groups) * len(plan.cameras),
        "cameras": [k for k, _ in plan.cameras],
        "codec": plan.codec,
        "language": plan.language,
        "annotations": data.annotators,
        "left_out": sorted(data.annotators) if plan.language == "none" else [],
        "fingerprint": fp,
    }
    if existing == fp:
        return summary | {"unchanged": True}
    if dest.exists(INFO) and not opts.overwrite:
        raise ExportError(
            f"{dest_url}: holds another export (fingerprint {existing}); pass --overwrite to replace it"
        )
    if _is_url(to):
        local = layout.store.local()
        if local is None:
            raise ExportError(f"{layout.url}: export reads a local layout (work/ is not published)")
        staging = local / WorkDir.EXPORT / f"{name}-{fp}"
    else:
        parent = Path(to.removeprefix("file://"))
        parent.mkdir(parents=True, exist_ok=True)
        for old in parent.glob(f".{name}.partial-*"):
            if old.name != f".{name}.partial-{fp}":
                shutil.rmtree(old)  # a run of other options or another layout: its groups do not fit
        staging = parent / f".{name}.partial-{fp}"
    info, reused = _build(data, plan, staging, progress)
    if _is_url(to):
        _upload(staging, dest)
        shutil.rmtree(staging)
    else:
        final = Path(to.removeprefix("file://")) / name
        if final.exists():
            shutil.rmtree(final)
        staging.replace(final)
    return summary | {"unchanged": False, "groups_reused": reused, "splits": info["splits"]}


def export_lerobot(
    layout: Layout, names: list[str], to: str, opts: ExportOptions, progress: Progress | None = None
) -> dict:
    """Export each of `names` (robot datasets of `layout`) under `to`; the `--json` summary."""
    return {
        "format": "lerobot v3.0",
        "datasets": {n: export_one(layout, n, to, opts, progress) for n in names},
    }
