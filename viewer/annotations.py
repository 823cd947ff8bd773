"""The subtask and the verbal instruction in force at each frame of a robot episode, from the HL and VI
datasets that annotate it (manifest `annotates`): an HL sample's target is its subtask, a VI sample's
task (in its prompt) is the instruction. Such datasets keep every `stride`-th frame of their spans, so
the text in force at frame f is that of the annotation's sample at the largest frame f' with
f - stride < f' <= f; none there means no subtask (or instruction) at f."""

from __future__ import annotations

import re

from vlamix.viewer.layout_reader import IndexRow, ViewError, ViewLayout

__all__ = ["ANNOTATION_KINDS", "instruction_of", "texts_in_force"]

ANNOTATION_KINDS = {"HL": "subtask", "VI": "instruction"}
_TASK = re.compile(r"Task: (.*), Control: [a-z]+, State: [0-9 ]*;\nAction: ", re.S)


def instruction_of(prompt: str, where: str) -> str:
    """The task text of a robot prompt (`Task: <task>, Control: <mode>, State: <bins>;\\nAction: `)."""
    m = _TASK.fullmatch(prompt)
    if m is None:
        raise ViewError(f"{where}: prompt.txt is not a robot prompt (`Task: ..., Control: ..., State: ...`)")
    return m.group(1)


def annotating(layout: ViewLayout, dataset: str) -> list[tuple[str, str]]:
    """(dataset, field) of every HL/VI dataset over the robot data `dataset` shows (itself included when
    it is one), by name."""
    entry = layout.entry(dataset)
    base = entry.get("annotates") or dataset
    out = []
    for name in sorted(layout.manifest["datasets"]):
        e = layout.manifest["datasets"][name]
        if isinstance(e, dict) and e.get("kind") in ANNOTATION_KINDS and e.get("annotates") == base:
            out.append((name, ANNOTATION_KINDS[e["kind"]]))
    return out


def _text(field: str, sample: dict[str, bytes], where: str) -> str:
    if field == "subtask":
        return sample.get("target.txt", b"").decode()
    return instruction_of(sample.get("prompt.txt", b"").decode(), where)


def texts_in_force(
    layout: ViewLayout, dataset: str, episode: int, frames: list[int]
) -> dict[str, dict[int, str]]:
    """{"subtask": {frame: text}, "instruction": {frame: text}} for the given frames of `episode` (a
    frame without one in force maps to ""). Reads only the annotation samples that are in force at one of
    `frames`."""
    out: dict[str, dict[int, str]] = {
        "subtask": dict.fromkeys(frames, ""),
        "instruction": dict.fromkeys(frames, ""),
    }
    wanted = sorted(set(frames))
    for name, field in annotating(layout, dataset):
        stride = layout.entry(name).get("stride") or 1
        if not isinstance(stride, int) or stride < 1:
            raise ViewError(f"{layout.store.url_of('manifest.json')}: dataset {name!r} has stride {stride!r}")
        rows = {r.frame: r for r in layout.index_rows(name) if r.episode == episode and r.frame is not None}
        in_force: dict[int, IndexRow] = {}
        for f in wanted:  # the latest annotation sample within one stride at or before f
            hit = next((rows[g] for g in range(f, f - stride, -1) if g in rows), None)
            if hit is not None:
                in_force[f] = hit
        needed = sorted({r.key: r for r in in_force.values()}.values(), key=lambda r: r.frame or 0)
        texts = {}
        for row, sample in layout.read(name, needed):
            texts[row.key] = _text(field, sample, f"{layout.store.url_of(row.shard)} (sample {row.key})")
        for f, row in in_force.items():
            out[field][f] = texts[row.key]
    return out
