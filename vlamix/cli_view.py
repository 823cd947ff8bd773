"""`vlamix view`: look at a layout's episodes in Rerun or as a static web page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vlamix.cli_common import fail as _fail

__all__ = ["view"]


def view(
    layout: Annotated[
        str,
        typer.Argument(
            help="A layout folder, its manifest.json, or a URL of either (file://, http(s)://, s3://, hf://datasets/ORG/NAME)."
        ),
    ],
    dataset: Annotated[str, typer.Option(help="The dataset to show (a name of the manifest).")],
    episode: Annotated[
        list[int] | None,
        typer.Option(
            "--episode",
            help="An episode to show, repeated for several (default: the first 5). Web data has items, not episodes.",
        ),
    ] = None,
    rrd: Annotated[
        Path | None,
        typer.Option(help="Write a Rerun recording here (.rrd): one recording per episode, every sample."),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            help="Write a self-contained web page into this folder (index.html and img/): opens offline, no server."
        ),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="Shard cache for a layout at a URL (default: the trainer's, $VLAMIX_CACHE/shards)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """See a dataset's episodes: cameras as the model sees them, state and actions (normalized, native, and
    the FAST reconstruction), prompt, target, subtask and instruction on one timeline.

    Without --rrd or --html the recording goes to a spawned Rerun viewer where there is a display, else
    to vlamix_view_DATASET.rrd with a line saying how to open it."""
    from vlamix.shards.random_access import SampleReadError
    from vlamix.viewer.layout_reader import ViewError
    from vlamix.viewer.run import run_view

    try:
        summary = run_view(layout, dataset, episode or [], rrd=rrd, html=html, cache=cache)
    except (ViewError, SampleReadError, OSError, ValueError, KeyError) as e:
        _fail(str(e))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    shown = ", ".join("items" if e is None else str(e) for e in summary["episodes"])
    typer.echo(f"{summary['layout']}: {summary['dataset']} ({summary['kind']}), episodes {shown}")
    if "html" in summary:
        h = summary["html"]
        typer.echo(
            f"  page: {h['page']} ({h['frames']} frames, {h['images']} images, {h['bytes'] / 1e6:.1f} MB); "
            "open it in a browser, no server needed"
        )
    if summary.get("no_display"):
        typer.echo(
            "  no display here to spawn the Rerun viewer on: the recording went to a file (or pass --rrd/--html)"
        )
    if "rrd" in summary:
        samples = sum(summary["rrd"]["recordings"].values())
        typer.echo(
            f"  recording: {summary['rrd']['path']} ({len(summary['rrd']['recordings'])} recordings, {samples} samples)"
        )
        typer.echo(f"  open it with: {summary['open']}")
    if "spawned" in summary:
        typer.echo(f"  streamed {len(summary['spawned'])} recordings to the Rerun viewer")
