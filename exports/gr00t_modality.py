"""GR00T's `meta/modality.json` for an exported LeRobot dataset: the state and action sub-ranges named by the
embodiment's dims, the video keys, and the task annotation (the layout GR00T's LeRobot loader documents:
`{state|action: {part: {start, end, ...}}, video: {name: {original_key}}, annotation: {...}}`).

Parts, by one rule over the spec's dims in order:
- a run of consecutive dims of one kind in one named `frame` (e.g. mobile_aloha's `left_arm` joints) is a
  part named after the frame; a run of dims named `<stem>_<k>` of one kind is a part named `<stem>`;
- any other dim is a part of its own, named after the dim;
- when two parts would share a name, every part falls back to one per dim, named after its dim.
Action parts say `absolute`: false only for dims the source logs as deltas (`representation: delta`); the
exported values are native, so a dim the model trains as a delta (`delta: true`) is still absolute here.
A trained rotation group's dims (Euler xyz or rot6d, design §2) form one part with GR00T's `rotation_type`.
"""

from __future__ import annotations

import re

from vlamix.schemas.embodiment import Dim, Embodiment

__all__ = ["gr00t_modality", "parts_of"]

_STEM = re.compile(r"^(.*)_(\d+)$")
_ROTATION_TYPE = {"euler_xyz": "euler_angles_rpy", "rot6d": "rotation_6d"}  # GR00T's RotationType names


def _key(d: Dim) -> tuple[str, str] | None:
    if d.frame != "native":
        return d.frame, d.kind
    m = _STEM.match(d.name)
    return (m.group(1), d.kind) if m else None


def parts_of(emb: Embodiment, part: str) -> list[tuple[str, int, int, dict]]:
    """[(name, start, end, extra)] of the spec's `part` ("state" or "action") dims."""
    dims = emb.state if part == "state" else emb.action
    rotations = {}
    for span in emb.spans(part):
        rotations[span.start] = (span.start + span.width, span.train)
    out: list[tuple[str, int, int, dict]] = []
    i = 0
    while i < len(dims):
        if i in rotations:
            stop, train = rotations[i]
            out.append(
                (
                    _key(dims[i])[0] if _key(dims[i]) else dims[i].name,
                    i,
                    stop,
                    {"rotation_type": _ROTATION_TYPE[train]},
                )
            )
            i = stop
            continue
        j, key = i + 1, _key(dims[i])
        while key is not None and j < len(dims) and j not in rotations and _key(dims[j]) == key:
            j += 1
        out.append((key[0] if j - i > 1 and key else dims[i].name, i, j, {}))
        i = j
    names = [p[0] for p in out]
    if len(set(names)) != len(names):
        out = [(d.name, k, k + 1, {}) for k, d in enumerate(dims)]
    return out


def gr00t_modality(emb: Embodiment, video_keys: list[str]) -> dict:
    """modality.json for `emb`'s export whose videos are `video_keys` (`observation.images.<name>`)."""
    doc: dict = {"state": {}, "action": {}}
    for part in ("state", "action"):
        dims = emb.state if part == "state" else emb.action
        for name, start, end, extra in parts_of(emb, part):
            entry = {"start": start, "end": end} | extra
            if part == "action":
                entry["absolute"] = all(d.representation == "absolute" for d in dims[start:end])
            doc[part][name] = entry
    doc["video"] = {k.removeprefix("observation.images."): {"original_key": k} for k in video_keys}
    doc["annotation"] = {"human.task_description": {"original_key": "task_index"}}
    return doc
