"""openpi's `norm_stats.json` from a layout's exact statistics (`stats/<dataset>.json`).

openpi normalizes what its data transforms hand the model: the state, and the action chunks after the
delta conversion, per dim (`{"norm_stats": {"state": {mean, std, q01, q99}, "actions": {...}}}`). The layout's
statistics are exactly that: the state per frame and the actions over every step of every chunk, after the
chain's delta and rotation transforms (design §3, §16), so they carry over without a new pass; the dims are
the embodiment's trained dims, and openpi's own padding to the model's width comes after. An HL or VI
dataset is normalized with the robot dataset it annotates, so it exports that one's statistics.
"""

from __future__ import annotations

from vlamix.exports.layout_source import ExportError, Layout
from vlamix.schemas.frame import ROBOT_KINDS
from vlamix.shards.layout import STATS_PATH

__all__ = ["openpi_norm_stats"]

_KEYS = ("mean", "std", "q01", "q99")


def openpi_norm_stats(layout: Layout, name: str) -> tuple[dict, str]:
    """(norm_stats.json's content, the robot dataset whose statistics it holds)."""
    entry = layout.manifest["datasets"].get(name)
    if entry is None:
        raise ExportError(
            f"{layout.url}: no dataset {name!r} in the manifest (it has: {', '.join(sorted(layout.manifest['datasets']))})"
        )
    robot = entry.get("normalized_with", name)
    if layout.manifest["datasets"][robot]["kind"] not in ROBOT_KINDS:
        raise ExportError(
            f"{layout.url}: {name!r} is a {entry['kind']} dataset: it has no state or action statistics"
        )
    doc = layout.store.read_json(STATS_PATH.format(dataset=robot))
    out = {}
    for ours, theirs in (("state", "state"), ("actions", "actions")):
        stats = doc[ours]
        widths = {len(stats[k]) for k in _KEYS}
        if len(widths) != 1:
            raise ExportError(
                f"{layout.store.url_of(STATS_PATH.format(dataset=robot))}: {ours} statistics of unequal widths {sorted(widths)}"
            )
        out[theirs] = {k: [float(v) for v in stats[k]] for k in _KEYS}
    return {"norm_stats": out}, robot
