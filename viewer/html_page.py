"""`vlamix view --html DIR`: a self-contained static page of one dataset, `DIR/index.html` with the camera
images beside it (`DIR/img/<sha256>.jpg`, each distinct JPEG once, bytes as in the shard). No server and
no CDN: the style, the script (page_assets.py) and the data (JSON) are inline, so the page opens from
disk, offline.

The page: the dataset's accounting, the episode list (every episode of the index, and the quarantined
ones with their reasons), the quarantine records, and per shown episode a frame scrubber that moves
the cameras (as the model sees them), a cursor over the action plots (the chunk's first step in native
units beside its FAST reconstruction) and the state plots (native units), the prompt, target, subtask
and instruction of the sample under the cursor, and its numbers (native and normalized). Episodes are
decimated (episodes.py: at most `MAX_PAGE_FRAMES` frames each). The same inputs give the same bytes."""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from vlamix.viewer.episodes import MAX_PAGE_FRAMES, EpisodeInfo, Frame, decimate, episode_rows, read_frames
from vlamix.viewer.layout_reader import ViewLayout
from vlamix.viewer.page_assets import CSS, SCRIPT
from vlamix.viewer.sample_values import DatasetUnits

__all__ = ["IMAGE_DIR", "PAGE", "write_page"]

PAGE = "index.html"
IMAGE_DIR = "img"


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else float(f"{x:.6g}")


def _columns(frames: list[Frame], part: str, dims: int) -> list[list[float | None]]:
    """One list per dim over the frames of `part` (a SampleValues field)."""
    return [[_num(float(getattr(f.values, part)[d])) for f in frames] for d in range(dims)]


def _image(out: Path, jpeg: bytes, written: set[str]) -> str:
    name = f"{IMAGE_DIR}/{hashlib.sha256(jpeg).hexdigest()[:20]}.jpg"
    if name not in written:
        (out / name).write_bytes(jpeg)
        written.add(name)
    return name


def _turns(frame: Frame) -> str:
    return "\n".join(f"{t['kind']}: {t['prompt']} → {t['target']}" for t in frame.turns)


def _episode_data(
    frames: list[Frame],
    info: EpisodeInfo,
    step: int,
    units: DatasetUnits | None,
    out: Path,
    written: set[str],
) -> dict:
    label = "items" if info.episode is None else f"episode {info.episode}"
    rule = f"ceil({info.samples} / {MAX_PAGE_FRAMES})"
    note = (
        f"all {info.samples} samples"
        if step == 1
        else f"one sample in {step} of {info.samples} (step = {rule}), {len(frames)} shown"
    )
    data: dict = {
        "episode": info.episode,
        "label": label,
        "note": note,
        "frames": [
            {
                "key": f.key,
                "f": f.frame,
                "t": f.time,
                "img": {slot: _image(out, jpeg, written) for slot, jpeg in f.images.items()},
                "prompt": f.prompt,
                "target": f.target,
                "subtask": f.subtask,
                "instruction": f.instruction,
                "turns": _turns(f),
            }
            for f in frames
        ],
        "series": {},
    }
    if units is not None:
        ds, da = units.emb.state_dim, units.emb.action_dim
        data["series"] = {
            "state": _columns(frames, "state_native", ds),
            "state_n": _columns(frames, "state", ds),
            "action": _columns(frames, "action_native", da),
            "action_n": _columns(frames, "action", da),
            "fast": _columns(frames, "action_fast", da),
        }
    return data


def _table(head: list[str], rows: list[list], attrs: list[str] | None = None, table_id: str = "") -> str:
    ident = f' id="{table_id}"' if table_id else ""
    out = [
        f"<table{ident}><thead><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
    ]
    for i, row in enumerate(rows):
        extra = f" {attrs[i]}" if attrs and attrs[i] else ""
        out.append(
            f"<tr{extra}>"
            + "".join(f"<td>{html.escape('–' if v is None else str(v))}</td>" for v in row)
            + "</tr>"
        )
    return "".join(out) + "</tbody></table>"


def _episode_table(infos: list[EpisodeInfo], shown: list[EpisodeInfo], quarantine: list[dict]) -> str:
    head = [
        "episode",
        "split",
        "success",
        "environment",
        "samples",
        "length (frames)",
        "duration (s)",
        "on this page",
    ]
    index = {i.episode: n for n, i in enumerate(shown)}
    rows, attrs = [], []
    for i in infos:
        on = i.episode in index
        rows.append(
            [
                "items" if i.episode is None else i.episode,
                i.split,
                i.success,
                i.environment,
                i.samples,
                i.length,
                i.duration,
                "yes (click)" if on else "no: pick it with --episode",
            ]
        )
        attrs.append(f'data-ep="{index[i.episode]}"' if on else 'class="off"')
    for q in quarantine:
        if q.get("episode") is None:
            continue
        rows.append([q["episode"], "quarantined", None, None, 0, q.get("frames") or None, None, q["reason"]])
        attrs.append('class="quarantined"')
    return _table(head, rows, attrs, "episode-list")


def _quarantine_table(quarantine: list[dict]) -> str:
    if not quarantine:
        return '<p id="quarantine-none">No record: nothing of this dataset was quarantined.</p>'
    rows = [
        [q.get("episode", q.get("item")), q.get("frame"), q.get("field"), q.get("source_file"), q["reason"]]
        for q in quarantine
    ]
    return _table(["episode / item", "frame", "field", "file", "reason"], rows, table_id="quarantine-list")


def _values_tables(units: DatasetUnits | None) -> str:
    if units is None:
        return ""
    state = _table(["state dim", "unit", "native", "normalized"], []).replace(
        "<tbody>", '<tbody id="values-state">'
    )
    action = _table(["action dim", "unit", "chunk step 0, native", "normalized", "FAST, native"], [])
    action = action.replace("<tbody>", '<tbody id="values-action">')
    return f'<h3>At the cursor</h3><div class="plots">{state}{action}</div>'


_PLOTS = """<h3>Action: the chunk's first step in native units, and its FAST reconstruction</h3>
<p class="legend"><span style="color:#1f5fbf">— chunk step 0</span><span style="color:#e07b00">- - FAST</span></p>
<div class="plots" id="action-plots"></div>
<h3>State, native units</h3>
<div class="plots" id="state-plots"></div>"""


def write_page(
    out: Path,
    layout: ViewLayout,
    dataset: str,
    infos: list[EpisodeInfo],
    shown: list[EpisodeInfo],
    units: DatasetUnits | None,
) -> dict:
    """Write the page of `dataset` into folder `out`, with the episodes `shown` (of `infos`, the whole
    list); returns what it holds (episodes, frames shown, images written, bytes). The files are made in a
    staging folder beside `out` and moved in at the end, `index.html` last: a failure leaves `out` as it
    was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".vlamix-view-", dir=out.parent))
    try:
        summary = _write(stage, layout, dataset, infos, shown, units)
        (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
        for image in sorted((stage / IMAGE_DIR).iterdir()):
            os.replace(image, out / IMAGE_DIR / image.name)
        os.replace(stage / PAGE, out / PAGE)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {**summary, "page": str(out / PAGE)}


def _write(
    out: Path,
    layout: ViewLayout,
    dataset: str,
    infos: list[EpisodeInfo],
    shown: list[EpisodeInfo],
    units: DatasetUnits | None,
) -> dict:
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    entry = layout.entry(dataset)
    quarantine = layout.quarantine(dataset)
    written: set[str] = set()
    episodes = []
    for info in shown:
        rows, step = decimate(episode_rows(layout, dataset, info.episode))
        frames = list(read_frames(layout, dataset, info.episode, rows, units))
        episodes.append(_episode_data(frames, info, step, units, out, written))
    emb = None if units is None else units.emb
    data = {
        "dataset": dataset,
        "kind": entry["kind"],
        "slots": sorted({s for e in episodes for f in e["frames"] for s in f["img"]}),
        "state_dims": [] if emb is None else [{"name": d.name, "unit": d.unit} for d in emb.state],
        "action_dims": [] if emb is None else [{"name": d.name, "unit": d.unit} for d in emb.action],
        "episodes": episodes,
    }
    texts = ["prompt", "target"] + (["turns"] if emb is None else ["subtask", "instruction"])
    accounting = entry.get("accounting") or {}
    title = (
        f"{dataset} ({entry['kind']}"
        + ("" if emb is None else f", {emb.name}, {emb.control_rate_hz:g} Hz")
        + ")"
    )
    shown_note = f"{len(shown)} of {len(infos)} episodes on this page"
    if len(shown) < len(infos):
        shown_note += " (others: --episode N)"
    payload = json.dumps(data, sort_keys=True).replace("</", "<\\/")  # no `</script>` inside the script
    plots = "" if emb is None else _PLOTS
    parts = [
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>vlamix view: {html.escape(dataset)}</title>',
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="where">layout: {html.escape(layout.where)} · {shown_note} · written by vlamix view</p>',
        f"<h2>Accounting ({html.escape(str(accounting.get('unit', '')))}s)</h2>",
        _table(list(accounting), [list(accounting.values())], table_id="accounting"),
        "<h2>Episodes</h2>",
        _episode_table(infos, shown, quarantine),
        "<h2>Quarantine</h2>",
        _quarantine_table(quarantine),
        '<h2 id="episode-title"></h2><p class="note" id="decimation"></p>',
        '<div class="scrub"><input type="range" id="scrubber" min="0" max="0" value="0" step="1">'
        '<span id="frame-label"></span></div>',
        '<div id="cameras"></div>',
        '<dl id="texts">' + "".join(f'<dt>{t}</dt><dd id="text-{t}"></dd>' for t in texts) + "</dl>",
        plots,
        _values_tables(units),
        f'<script id="view-data" type="application/json">{payload}</script>',
        f"<script>{SCRIPT}</script>",
        "</body></html>\n",
    ]
    page = "\n".join(parts)
    (out / PAGE).write_text(page)
    return {
        "page": str(out / PAGE),
        "episodes": len(episodes),
        "frames": sum(len(e["frames"]) for e in episodes),
        "images": len(written),
        "bytes": len(page.encode()) + sum((out / n).stat().st_size for n in written),
    }
