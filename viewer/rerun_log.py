"""`vlamix view --rrd`: a dataset's episodes as a Rerun recording (rerun-sdk), one recording per episode
(application `vlamix`, recording id `<dataset>/episode_<N>`; a web dataset's items are one recording,
`<dataset>/items`), all in one .rrd file. Every sample is logged (no decimation).

Timelines: `frame` (the frame number; web data: the item number) and `time` (seconds from the
episode's start; robot data only). Entities, dims named by the embodiment spec:

    camera/<slot>                 the slot's JPEG as the model sees it (224x224, padded); real slots only
    state/<dim>                   the state in native units (through the chain's inverses)
    state_normalized/<dim>        the state as in the shard
    action/<dim>/native           the chunk's first step in native units
    action/<dim>/fast             its FAST reconstruction (the sample's FAST ids decoded; NaN if invalid)
    action_normalized/<dim>       the chunk's first step as in the shard
    text/prompt, text/target      the sample's prompt and target text
    text/subtask, text/instruction  the subtask and verbal instruction in force (annotations.py)
    text/turns                    web data: every turn of the item
    episode                       static: dataset, kind, embodiment, episode, split, success, length

Each recording is logged column-wise (`send_columns`, `READ_BATCH` samples at a time), without Rerun's
wall-clock `log_time` and recording properties; Rerun's row ids are its own (time-based), so the file's
bytes differ from run to run while its contents do not. Several episodes are written to one temporary
file each, then joined by `rerun rrd merge` (Rerun's own command, shipped in the same wheel)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vlamix.schemas.embodiment import CAMERA_SLOTS, Embodiment
from vlamix.viewer.episodes import EpisodeInfo, Frame, episode_rows, read_frames
from vlamix.viewer.layout_reader import READ_BATCH, ViewError, ViewLayout
from vlamix.viewer.sample_values import DatasetUnits

__all__ = ["APPLICATION", "display_available", "recording_id", "spawn_recordings", "write_rrd"]

APPLICATION = "vlamix"


def recording_id(dataset: str, episode: int | None) -> str:
    return f"{dataset}/items" if episode is None else f"{dataset}/episode_{episode:06d}"


def display_available(env: dict[str, str] | None = None) -> bool:
    """Whether a spawned viewer (a desktop window) could open here: macOS and Windows, or a Linux
    session with an X or Wayland display."""
    env = dict(os.environ) if env is None else env
    return sys.platform in ("darwin", "win32") or bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def _path(*parts: str) -> str:
    import rerun as rr

    return "/".join(rr.escape_entity_path_part(p) for p in parts)


def _batches(frames: Iterator[Frame]) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for f in frames:
        batch.append(f)
        if len(batch) == READ_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _blueprint(emb: Embodiment | None, slots: list[str]):
    import rerun.blueprint as rrb

    cameras = rrb.Grid(*[rrb.Spatial2DView(origin=f"camera/{s}", name=s) for s in slots], name="cameras")
    texts = rrb.Tabs(
        *[
            rrb.TextDocumentView(origin=f"text/{t}", name=t)
            for t in (
                ("prompt", "target", "subtask", "instruction") if emb else ("prompt", "target", "turns")
            )
        ],
        rrb.TextDocumentView(origin="episode", name="episode"),
    )
    if emb is None:
        return rrb.Blueprint(rrb.Horizontal(cameras, texts))
    plots = rrb.Tabs(
        rrb.Grid(
            *[
                rrb.TimeSeriesView(origin=f"action/{_path(d.name)}", name=f"{d.name} [{d.unit}]")
                for d in emb.action
            ],
            name="action: chunk step 0 and FAST",
        ),
        rrb.TimeSeriesView(origin="state", name="state (native)"),
        rrb.TimeSeriesView(origin="state_normalized", name="state (normalized)"),
        rrb.TimeSeriesView(origin="action_normalized", name="action (normalized)"),
    )
    return rrb.Blueprint(rrb.Horizontal(rrb.Vertical(cameras, texts), plots, column_shares=[2, 3]))


def _episode_doc(layout: ViewLayout, dataset: str, info: EpisodeInfo, emb: Embodiment | None) -> str:
    entry = layout.entry(dataset)
    lines = [f"# {dataset}", "", f"- layout: {layout.store.url}", f"- kind: {entry['kind']}"]
    if emb is not None:
        lines.append(f"- embodiment: {emb.name} ({emb.control_rate_hz:g} Hz, {emb.control_mode})")
    lines += [
        f"- episode: {'items' if info.episode is None else info.episode}",
        f"- split: {info.split}",
        f"- success: {'unknown' if info.success is None else info.success}",
        f"- samples: {info.samples}",
    ]
    if info.environment is not None:
        lines.append(f"- environment: {info.environment}")
    if info.length is not None:
        lines.append(f"- length: {info.length} frames ({info.duration:g} s)")
    return "\n".join(lines) + "\n"


def _indexes(batch: list[Frame], robot: bool) -> list:
    import rerun as rr

    indexes = [rr.TimeColumn("frame", sequence=[f.frame for f in batch])]
    if robot:
        indexes.append(rr.TimeColumn("time", duration=[f.time or 0.0 for f in batch]))
    return indexes


def _log_batch(rec, batch: list[Frame], emb: Embodiment | None) -> None:
    import rerun as rr

    indexes = _indexes(batch, emb is not None)
    for slot in sorted({s for f in batch for s in f.images}):
        have = [f for f in batch if slot in f.images]
        blobs = [f.images[slot] for f in have]
        column = rr.EncodedImage.columns(blob=blobs, media_type=["image/jpeg"] * len(blobs))
        rec.send_columns(f"camera/{slot}", _indexes(have, emb is not None), column)
    texts = {"prompt": [f.prompt for f in batch], "target": [f.target for f in batch]}
    if emb is None:
        texts["turns"] = [
            "\n".join(f"- **{t['kind']}** `{t['prompt']}` → {t['target']}" for t in f.turns) for f in batch
        ]
    else:
        texts["subtask"] = [f.subtask for f in batch]
        texts["instruction"] = [f.instruction for f in batch]
    for name, column in texts.items():
        rec.send_columns(f"text/{name}", indexes, rr.TextDocument.columns(text=column))
    if emb is None:
        return
    values = [f.values for f in batch if f.values is not None]
    if len(values) != len(batch):
        raise ViewError(f"{batch[0].key}: a robot sample without state and actions")
    state_names, action_names = [d.name for d in emb.state], [d.name for d in emb.action]
    series = {
        "state": (state_names, np.stack([v.state_native for v in values])),
        "state_normalized": (state_names, np.stack([v.state for v in values])),
        "action_normalized": (action_names, np.stack([v.action for v in values])),
    }
    native = np.stack([v.action_native for v in values])
    fast = np.stack([v.action_fast for v in values])
    for prefix, (names, array) in series.items():
        for i, name in enumerate(names):
            column = rr.Scalars.columns(scalars=array[:, i].astype(np.float64))
            rec.send_columns(f"{prefix}/{_path(name)}", indexes, column)
    for i, name in enumerate(action_names):
        for part, array in (("native", native), ("fast", fast)):
            column = rr.Scalars.columns(scalars=array[:, i].astype(np.float64))
            rec.send_columns(f"action/{_path(name)}/{part}", indexes, column)


def _log_episode(rec, layout: ViewLayout, dataset: str, info: EpisodeInfo, units: DatasetUnits | None) -> int:
    import rerun as rr

    emb = None if units is None else units.emb
    rec.log(
        "episode",
        rr.TextDocument(_episode_doc(layout, dataset, info, emb), media_type="text/markdown"),
        static=True,
    )
    if emb is not None:
        for d in emb.action:
            rec.log(
                f"action/{_path(d.name)}/native",
                rr.SeriesLines(names=f"{d.name}: chunk step 0", widths=2.0),
                static=True,
            )
            rec.log(
                f"action/{_path(d.name)}/fast",
                rr.SeriesLines(names=f"{d.name}: FAST", widths=1.0),
                static=True,
            )
    n, slots = 0, {"base_0"} if emb is None else set()
    rows = episode_rows(layout, dataset, info.episode)
    for batch in _batches(read_frames(layout, dataset, info.episode, rows, units)):
        _log_batch(rec, batch, emb)
        n += len(batch)
        slots.update(s for f in batch for s in f.images)
    rec.send_blueprint(_blueprint(emb, [s for s in CAMERA_SLOTS if s in slots]))  # the slots it has
    return n


def _recording(dataset: str, episode: int | None):
    import rerun as rr

    rec = rr.RecordingStream(APPLICATION, recording_id=recording_id(dataset, episode), send_properties=False)
    rec.set_log_time_enabled(False)
    rec.send_recording_name(recording_id(dataset, episode))
    return rec


def write_rrd(
    layout: ViewLayout, dataset: str, episodes: list[EpisodeInfo], units: DatasetUnits | None, out: Path
) -> dict[str, int]:
    """Write one recording per episode into `out` (whole or not at all); returns {recording id: samples}."""
    out.parent.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix=".vlamix-view-", dir=out.parent) as tmp:
        parts = []
        for info in episodes:
            part = Path(tmp) / f"{len(parts):06d}.rrd"
            rec = _recording(dataset, info.episode)
            rec.save(part)
            counts[recording_id(dataset, info.episode)] = _log_episode(rec, layout, dataset, info, units)
            rec.flush()
            rec.disconnect()
            parts.append(part)
        if len(parts) == 1:
            os.replace(parts[0], out)
            return counts
        joined = Path(tmp) / "joined.rrd"
        cmd = [sys.executable, "-m", "rerun_cli", "rrd", "merge", "-o", str(joined), *map(str, parts)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not joined.is_file():
            raise ViewError(f"{out}: `rerun rrd merge` failed ({done.stderr.strip().splitlines()[-1:]})")
        shutil.move(joined, out)
    return counts


def spawn_recordings(
    layout: ViewLayout, dataset: str, episodes: list[EpisodeInfo], units: DatasetUnits | None
) -> dict[str, int]:
    """Stream each episode's recording to a Rerun viewer (spawned, or the one already running)."""
    counts: dict[str, int] = {}
    for info in episodes:
        rec = _recording(dataset, info.episode)
        rec.spawn()
        counts[recording_id(dataset, info.episode)] = _log_episode(rec, layout, dataset, info, units)
        rec.flush()
    return counts
