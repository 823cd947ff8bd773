"""`vlamix view` as one call: open the layout (a folder or a URL), pick the dataset's episodes, and write
the Rerun recording (`rrd`), the web page (`html`), or both; with neither, stream the recording to a
spawned Rerun viewer where a desktop is there to show it, else write `vlamix_view_<dataset>.rrd` in the
current folder and say how to open it."""

from __future__ import annotations

from pathlib import Path

from vlamix.viewer.episodes import episode_list, select_episodes
from vlamix.viewer.html_page import write_page
from vlamix.viewer.layout_reader import ViewError, open_layout
from vlamix.viewer.rerun_log import display_available, spawn_recordings, write_rrd
from vlamix.viewer.sample_values import DatasetUnits

__all__ = ["default_rrd", "run_view"]


def default_rrd(dataset: str) -> Path:
    """Where the recording goes when no viewer can be spawned and no --rrd was given."""
    return Path(f"vlamix_view_{dataset}.rrd")


def run_view(
    where: str,
    dataset: str,
    episodes: list[int],
    rrd: Path | None = None,
    html: Path | None = None,
    cache: Path | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """Write what was asked for; returns a summary (layout, dataset, episodes, and per output its path
    and counts; `open` says how to look at a written recording)."""
    layout = open_layout(where, cache)
    try:
        kind = layout.entry(dataset)["kind"]
        units = DatasetUnits.load(layout, dataset)
        infos = episode_list(layout, dataset, None if units is None else units.emb.control_rate_hz)
        if not infos:
            raise ViewError(f"{layout.store.url}: dataset {dataset!r} has no samples (all quarantined?)")
        shown = select_episodes(infos, episodes, dataset, web=kind == "WD")
        summary: dict = {
            "layout": layout.store.url,
            "dataset": dataset,
            "kind": kind,
            "episodes": [i.episode for i in shown],
            "episodes_in_dataset": len(infos) if kind != "WD" else None,
        }
        if html is not None:
            summary["html"] = write_page(html, layout, dataset, infos, shown, units)
        spawn = rrd is None and html is None and display_available(env)
        if spawn:
            summary["spawned"] = spawn_recordings(layout, dataset, shown, units)
        elif rrd is not None or html is None:
            target = rrd if rrd is not None else default_rrd(dataset)
            summary["rrd"] = {
                "path": str(target),
                "recordings": write_rrd(layout, dataset, shown, units, target),
            }
            summary["no_display"] = rrd is None  # no viewer could be spawned: the recording went to a file
            summary["open"] = (
                f"rerun {target}  (the viewer of the rerun-sdk wheel; on a machine without a display, "
                f"`rerun --web-viewer {target}` serves it to a browser)"
            )
        return summary
    finally:
        layout.close()
