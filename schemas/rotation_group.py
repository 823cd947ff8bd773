"""A rotation group of an embodiment spec: consecutive dims that together are one rotation, trained in
the spec's representation (3 dims: Euler xyz, 6 dims: rot6d) while the source logs it in its own
(`repr`: euler_xyz, quat_xyzw, quat_wxyz, rotvec, matrix or rot6d).

The spec's dims are what is trained; `repr` says how the source writes them. A quaternion source's four
values become the spec's three Euler (or six rot6d) dims on read, and back on the way out
(transforms/rotation_groups.py); a delta of a grouped action is the relative rotation R_t^-1 R_{t+h}.

    rotation: {dims: [3, 4, 5], repr: quat_xyzw}           # one group, in state and action alike
    rotation:                                              # or several, each in one part
      - {dims: [3, 4, 5, 6, 7, 8], repr: matrix, part: state}
      - {dims: [3, 4, 5], repr: rotvec, part: action}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["SOURCE_SIZES", "TRAIN_REPRS", "GroupSpan", "RotationGroup"]

SourceRepr = Literal["euler_xyz", "quat_xyzw", "quat_wxyz", "rotvec", "matrix", "rot6d"]
SOURCE_SIZES: dict[str, int] = {
    "euler_xyz": 3,
    "quat_xyzw": 4,
    "quat_wxyz": 4,
    "rotvec": 3,
    "matrix": 9,
    "rot6d": 6,
}
TRAIN_REPRS: dict[int, str] = {3: "euler_xyz", 6: "rot6d"}  # the spec's group width -> what is trained
# the source's values per representation, as the dims of the spec as logged are named (Embodiment.as_logged)
_COMPONENTS: dict[str, tuple[str, ...]] = {
    "euler_xyz": ("roll", "pitch", "yaw"),
    "quat_xyzw": ("qx", "qy", "qz", "qw"),
    "quat_wxyz": ("qw", "qx", "qy", "qz"),
    "rotvec": ("rx", "ry", "rz"),
    "matrix": tuple(f"m{i}{j}" for i in range(3) for j in range(3)),
    "rot6d": tuple(f"r6_{i}" for i in range(6)),
}


@dataclass(frozen=True)
class RotationGroup:
    dims: list[int]  # consecutive indices of the spec's (trained) dims: 3 (Euler xyz) or 6 (rot6d)
    repr: SourceRepr  # how the source logs this rotation
    part: Literal["both", "state", "action"] = "both"

    @property
    def train(self) -> str:
        return TRAIN_REPRS[len(self.dims)]

    def parts(self) -> tuple[str, ...]:
        return ("state", "action") if self.part == "both" else (self.part,)

    def check(self) -> None:
        if len(self.dims) not in TRAIN_REPRS:
            raise ValueError(
                f"rotation group {self.dims}: {len(self.dims)} dims; a group trains as 3 dims (Euler xyz) "
                "or 6 (rot6d)"
            )
        if list(self.dims) != list(range(self.dims[0], self.dims[0] + len(self.dims))) or self.dims[0] < 0:
            raise ValueError(f"rotation group {self.dims}: the dims must be consecutive indices, ascending")

    def components(self) -> tuple[str, ...]:
        return _COMPONENTS[self.repr]


@dataclass(frozen=True)
class GroupSpan:
    """A group in one part, where the conversion needs it: trained dims [start, start + width) hold
    `train`; the source's values [source_start, source_start + source_width) hold `repr`."""

    start: int
    width: int
    train: str
    repr: str
    source_start: int

    @property
    def source_width(self) -> int:
        return SOURCE_SIZES[self.repr]
