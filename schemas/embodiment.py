"""Embodiment specs: what each native state and action dim is, how fast the robot is controlled, and
which camera goes in which slot. Shipped specs live in `schemas/embodiments/<name>.yaml`."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vlamix.config import ConfigError, from_mapping, load_yaml, parse_yaml
from vlamix.schemas.rotation_group import GroupSpan, RotationGroup

__all__ = [
    "CAMERA_SLOTS",
    "DEFAULT_RANGES",
    "MAX_DIMS",
    "MODEL_HORIZON",
    "Dim",
    "Embodiment",
    "RotationGroup",
    "dim_range",
    "embodiment_from_text",
    "load_embodiment",
    "rotation_step_limit",
    "shipped_embodiments",
]

MAX_DIMS = 32  # canonical padded width of state and action (docs/design.md §2)
MODEL_HORIZON = 50  # steps every action chunk is padded to (docs/design.md §3)
CAMERA_SLOTS = ("base_0", "base_1", "left_wrist", "right_wrist")
SHIPPED_DIR = Path(__file__).parent / "embodiments"
_NAME = re.compile(r"^[a-z0-9_]+$")

DimKind = Literal[
    "joint_position", "joint_velocity", "gripper", "ee_position", "ee_rotation", "base_velocity", "other"
]


@dataclass(frozen=True)
class Dim:
    name: str
    kind: DimKind
    unit: str
    frame: str = "native"
    representation: Literal["absolute", "delta"] = "absolute"  # how the source expresses the value
    delta: bool = False  # action dims only: train as a[t+h] - s[t] (needs a state dim of the same name)
    range: tuple[float, float] | None = None  # physically possible values; default by kind (DEFAULT_RANGES)


# What a dim's values may be when its spec declares no `range:` (the quality gate's bounds): wide
# enough for any robot, narrow enough to catch unit mix-ups (degrees for radians, mm for m) and glitches.
DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "joint_position": (-4 * math.pi, 4 * math.pi),
    "joint_velocity": (-50.0, 50.0),
    "gripper": (-1.5, 2.5),  # normalized grippers; a spec with native units declares its own
    "ee_position": (-5.0, 5.0),
    # Euler angles (or their per-step deltas, unwrapped: 6.2 for a -0.08 turn) stay within one turn
    "ee_rotation": (-2 * math.pi, 2 * math.pi),
    "base_velocity": (-5.0, 5.0),
    "other": (-1e6, 1e6),
}


def dim_range(d: Dim) -> tuple[float, float]:
    return tuple(d.range) if d.range is not None else DEFAULT_RANGES[d.kind]


# A rotation delta turns the end effector by at most this much per second (one turn), once wrapped to
# [-pi, pi]. Deltas logged in degrees break it at once: 5 "rad" per step at 5 Hz is 25 rad/s.
MAX_ROTATION_SPEED = 2 * math.pi
RADIANS = ("rad", "radian", "radians")


def rotation_step_limit(d: Dim, control_rate_hz: float) -> float | None:
    """The largest wrapped per-step value a delta rotation dim may hold (None: no such limit): the
    quality gate checks it beside the range, which alone cannot tell a 5-degree step (5.0, inside one
    turn) from a wrapped radian one. A spec that declares `range:` for the dim takes that instead."""
    if d.kind != "ee_rotation" or d.representation != "delta" or d.range is not None:
        return None
    return MAX_ROTATION_SPEED / control_rate_hz


@dataclass(frozen=True)
class Gripper:
    """Native values of an open and a closed gripper; the chain maps them to 0 and 1 (1 = closed)."""

    open: float
    closed: float


@dataclass(frozen=True)
class Embodiment:
    name: str
    description: str
    control_rate_hz: float
    control_mode: Literal["joint", "ee"]
    state: list[Dim]
    action: list[Dim]
    cameras: dict[str, str | None]  # native camera name -> slot; null drops a camera on purpose
    gripper: Gripper | None = None
    horizon: int | None = None  # action chunk length; default one second at the control rate
    # "euler": Euler-angle deltas wrapped to [-pi, pi] (component differences); or rotation groups
    # (schemas/rotation_group.py): a source representation converted to the trained one, relative deltas
    rotation: Literal["euler", "none"] | RotationGroup | list[RotationGroup] = "none"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def groups(self) -> list[RotationGroup]:
        if isinstance(self.rotation, RotationGroup):
            return [self.rotation]
        return list(self.rotation) if isinstance(self.rotation, list) else []

    def spans(self, part: str) -> list[GroupSpan]:
        """The rotation groups of `part` (state or action), in dim order, with where each one's source
        values lie in the part as logged."""
        groups = sorted((g for g in self.groups if part in g.parts()), key=lambda g: g.dims[0])
        out, shift = [], 0
        for g in groups:
            out.append(GroupSpan(g.dims[0], len(g.dims), g.train, g.repr, g.dims[0] + shift))
            shift += len(g.components()) - len(g.dims)
        return out

    def logged_dim(self, part: str) -> int:
        """The width of `part` as the source logs it (the rotation groups in their source representation)."""
        dims = getattr(self, part)
        return len(dims) + sum(s.source_width - s.width for s in self.spans(part))

    def as_logged(self) -> Embodiment:
        """This spec as the source logs it: each rotation group's trained dims replaced by the source
        representation's values (named after its components, kind `other`). What the readers check
        widths and names against; the extract step then converts to the trained dims. A spec without
        groups is itself."""
        if not self.groups:
            return self
        parts = {}
        for part in ("state", "action"):
            dims = list(getattr(self, part))
            spans = self.spans(part)
            several = len(spans) > 1
            for k, span in reversed(list(enumerate(spans))):
                group = next(g for g in self.groups if part in g.parts() and g.dims[0] == span.start)
                first = dims[span.start]
                logged = [
                    Dim(f"g{k}_{c}" if several else c, "other", first.unit, first.frame, first.representation)
                    for c in group.components()
                ]
                dims[span.start : span.start + span.width] = logged
            parts[part] = dims
        return dataclasses.replace(self, rotation="none", **parts)

    @property
    def chunk_horizon(self) -> int:
        return self.horizon if self.horizon is not None else max(1, round(self.control_rate_hz))

    @property
    def state_dim(self) -> int:
        return len(self.state)

    @property
    def action_dim(self) -> int:
        return len(self.action)

    def check(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"name {self.name!r} must match [a-z0-9_]+")
        for part in ("state", "action"):
            dims = getattr(self, part)
            for d in dims:
                if d.range is not None and not (len(d.range) == 2 and d.range[0] < d.range[1]):
                    raise ValueError(
                        f"{part} dim {d.name!r}: range {list(d.range)} must be [low, high], low < high"
                    )
            if not 0 < len(dims) <= MAX_DIMS:
                raise ValueError(f"{part} has {len(dims)} dims; it needs 1..{MAX_DIMS}")
            names = [d.name for d in dims]
            if len(set(names)) != len(names):
                raise ValueError(f"{part} dim names repeat: {names}")
        state_names = {d.name for d in self.state}
        for d in self.action:
            if d.delta and d.name not in state_names:
                raise ValueError(f"action dim {d.name!r} is delta but no state dim has that name")
            if d.delta and d.representation == "delta":
                raise ValueError(
                    f"action dim {d.name!r} is already a delta in the source; `delta: true` would difference it twice"
                )
        self._check_groups()
        rot6d = {id(d) for part in ("state", "action") for d in self.rot6d_dims(part)}
        for d in (*self.state, *self.action):
            # the default range, the rotation step gate and the wrap all count radians; a spec in other
            # units declares its own `range:` (and no wrap); rot6d values are matrix entries, not angles
            wrapped_or_gated = self.rotation == "euler" or d.range is None
            if id(d) in rot6d:
                continue
            if d.kind == "ee_rotation" and wrapped_or_gated and d.unit.lower() not in RADIANS:
                raise ValueError(
                    f"dim {d.name!r} is a rotation in {d.unit!r}; rotations are gated and wrapped as radians: "
                    "convert the data to radians and declare `unit: rad`"
                )
        for native, slot in self.cameras.items():
            if slot is not None and slot not in CAMERA_SLOTS:
                raise ValueError(f"camera {native!r} maps to unknown slot {slot!r}; slots are {CAMERA_SLOTS}")
        if self.chunk_horizon > MODEL_HORIZON:
            raise ValueError(
                f"horizon {self.chunk_horizon} exceeds the model horizon {MODEL_HORIZON}: set `horizon:` lower"
            )
        if any(d.kind == "gripper" for d in self.action) and self.gripper is None:
            raise ValueError("action has gripper dims but no `gripper: {open, closed}` values")

    def rot6d_dims(self, part: str) -> list[Dim]:
        dims = getattr(self, part)
        return [
            dims[i] for s in self.spans(part) if s.train == "rot6d" for i in range(s.start, s.start + s.width)
        ]

    def _check_groups(self) -> None:
        taken: dict[str, set[int]] = {"state": set(), "action": set()}
        for g in self.groups:
            for part in g.parts():
                dims = getattr(self, part)
                if g.dims[-1] >= len(dims):
                    raise ValueError(
                        f"rotation group {g.dims}: {part} has {len(dims)} dims (indices 0..{len(dims) - 1}); "
                        "set `part: state` or `part: action` for a group that is in one part only"
                    )
                if taken[part] & set(g.dims):
                    raise ValueError(
                        f"rotation groups overlap in {part} at dims {sorted(taken[part] & set(g.dims))}"
                    )
                taken[part] |= set(g.dims)
                wrong = [dims[i].name for i in g.dims if dims[i].kind != "ee_rotation"]
                if wrong:
                    raise ValueError(
                        f"rotation group {g.dims}: {part} dims {wrong} are not of kind ee_rotation"
                    )
                if part == "action" and len({dims[i].delta for i in g.dims}) > 1:
                    raise ValueError(
                        f"rotation group {g.dims}: its action dims must all be `delta: true` or none"
                    )
        state = {d.name: i for i, d in enumerate(self.state)}
        for span in self.spans("action"):
            if not self.action[span.start].delta:
                continue
            names = [self.action[i].name for i in range(span.start, span.start + span.width)]
            start = state[names[0]]
            match = next((s for s in self.spans("state") if s.start == start), None)
            in_order = [self.state[i].name for i in range(start, start + span.width)] == names
            if match is None or match.train != span.train or not in_order:
                raise ValueError(
                    f"action rotation group {names} is `delta: true`: the state needs the same dims, in the "
                    "same order, in a rotation group of the same width (the delta is R_state^-1 R_action)"
                )


def shipped_embodiments() -> list[str]:
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def load_embodiment(name_or_path: str | Path) -> Embodiment:
    """A shipped spec by name (`mobile_aloha`) or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = SHIPPED_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"unknown embodiment {name_or_path!r}: shipped ones are {shipped_embodiments()}, "
                "or give the path of a YAML spec"
            )
    return from_mapping(Embodiment, load_yaml(path), str(path))


def embodiment_from_text(text: str, where: str) -> Embodiment:
    """A spec from YAML text (e.g. read from a published layout at a URL); `where` names it in errors."""
    data = parse_yaml(text, where)
    return from_mapping(Embodiment, data, where)
