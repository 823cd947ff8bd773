"""`vlamix export lerobot|openpi-norm-stats`: a layout's data in the formats other trainers load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vlamix.cli_common import fail as _fail

__all__ = ["export_app"]

export_app = typer.Typer(
    no_args_is_help=True, help="Hand a layout's data to other trainers: LeRobot v3.0 (GR00T too), openpi."
)


@export_app.command("lerobot")
def export_lerobot_cmd(
    layout: Annotated[Path, typer.Argument(help="A layout `vlamix ingest` built here (it keeps work/).")],
    to: Annotated[
        str,
        typer.Option("--to", help="Folder or URL (s3://, gs://, ...); one dataset folder per robot dataset."),
    ],
    dataset: Annotated[
        list[str], typer.Option("--dataset", help="A robot dataset of the layout (repeatable).")
    ] = [],  # noqa: B006
    mixture: Annotated[
        Path | None, typer.Option("--mixture", help="Export every robot dataset this mixture draws from.")
    ] = None,
    video_codec: Annotated[str, typer.Option("--video-codec", help="h264 or av1 (PyAV).")] = "h264",
    language: Annotated[
        str,
        typer.Option(
            help="Subtasks and verbal instructions: `columns` (LeRobot 0.6+'s language_persistent / "
            "language_events), `subtask-index` (LeRobot 0.4/0.5: subtask_index + meta/subtasks.parquet; "
            "no verbal instructions) or `none` (tasks only)."
        ),
    ] = "columns",
    gr00t: Annotated[bool, typer.Option("--gr00t", help="Also write GR00T's meta/modality.json.")] = False,
    frames_per_file: Annotated[
        int, typer.Option(help="Frames per data file and video (whole episodes; LeRobot's files roll over).")
    ] = 20_000,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an export of other options already there.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Export robot datasets as LeRobot v3.0 datasets in native units: parquet, one mp4 per camera per file,
    tasks, per-episode metadata and exact statistics. Re-running resumes; each dataset appears whole."""
    from tqdm import tqdm

    from vlamix.exports.layout_source import ExportError, export_datasets, open_layout
    from vlamix.exports.lerobot_export import ExportOptions, export_lerobot
    from vlamix.exports.lerobot_video import CODECS

    if video_codec not in CODECS:
        _fail(f"--video-codec {video_codec!r}: choose one of {', '.join(CODECS)}")
    if frames_per_file < 1:
        _fail("--frames-per-file must be at least 1")
    bars: dict[str, tqdm] = {}

    def progress(name: str, done: int, total: int) -> None:
        bar = bars.setdefault(name, tqdm(total=total, unit="frame", disable=as_json, desc=f"export {name}"))
        bar.update(done - bar.n)

    try:
        lay = open_layout(layout)
        names = export_datasets(lay, dataset, mixture)
        opts = ExportOptions(video_codec, language, gr00t, frames_per_file, overwrite)
        summary = export_lerobot(lay, names, to, opts, progress)
    except (ExportError, OSError) as e:
        _fail(str(e))
    finally:
        for bar in bars.values():
            bar.close()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for name, d in summary["datasets"].items():
        state = "unchanged" if d["unchanged"] else "written"
        typer.echo(
            f"{name}: {d['episodes']} episodes, {d['frames']} frames, {d['tasks']} tasks, "
            f"{len(d['cameras'])} cameras -> {d['to']} ({state})"
        )


@export_app.command("openpi-norm-stats")
def export_openpi_cmd(
    layout: Annotated[Path, typer.Argument(help="A layout (a folder or URL with stats/).")],
    dataset: Annotated[str, typer.Option("--dataset", help="The dataset whose statistics to export.")],
    to: Annotated[Path, typer.Option("--to", help="The norm_stats.json to write.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a summary as JSON.")] = False,
) -> None:
    """Write openpi's norm_stats.json (state and actions: mean, std, q01, q99) from the layout's exact
    statistics."""
    from vlamix.exports.layout_source import ExportError, open_layout
    from vlamix.exports.openpi_norm import openpi_norm_stats

    try:
        doc, robot = openpi_norm_stats(open_layout(str(layout)), dataset)
    except ExportError as e:
        _fail(str(e))
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = to.with_name(to.name + ".partial")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(to)
    summary = {"to": str(to), "dataset": dataset, "statistics_of": robot} | {
        k: len(v["mean"]) for k, v in doc["norm_stats"].items()
    }
    typer.echo(json.dumps(summary, indent=2) if as_json else f"wrote {to} (statistics of {robot})")
