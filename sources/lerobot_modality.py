"""NVIDIA GR00T's flavour of LeRobot: `meta/modality.json` names sub-ranges of the state and action
vectors, the videos and the annotations, e.g.

    {"state": {"single_arm": {"start": 0, "end": 6}, "gripper": {"start": 6, "end": 7}},
     "action": {"single_arm": {"start": 0, "end": 6}, "gripper": {"start": 6, "end": 7}},
     "video": {"ego_view": {"original_key": "observation.images.top"}},
     "annotation": {"human.task_description": {"original_key": "task_index"}}}

A state (action) part is [start, end) of the column `original_key` (default `observation.state`,
`action`), with GR00T's optional `absolute`, `rotation_type`, `dtype` and `range` kept as given. A
video's `original_key` defaults to `observation.images.<name>`, an annotation's to `annotation.<name>`
(a column of task indices into the tasks file, like `task_index`). A part's dims are named after it:
`single_arm_0` ... `single_arm_5` for a part 6 wide, `gripper` for one 1 wide.

Unknown keys, parts of one column that overlap, and parts past their column's end (its `shape` in
`meta/info.json`) are ConfigErrors naming the file and the part. Read once per dataset root (cached,
like info.json), locally or at a URL.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

from vlamix.config import ConfigError, from_mapping
from vlamix.sources.lerobot_meta import IMAGE_PREFIX, INFO_PATH, read_info
from vlamix.sources.location import locate, read_bytes

__all__ = [
    "DEFAULT_COLUMNS",
    "MODALITY_PATH",
    "Modality",
    "Part",
    "Renamed",
    "parse_modality",
    "read_modality",
]

MODALITY_PATH = "meta/modality.json"
DEFAULT_COLUMNS = {"state": "observation.state", "action": "action"}
RotationType = Literal[
    "axis_angle",
    "quaternion",
    "rotation_6d",
    "matrix",
    "euler_angles_rpy",
    "euler_angles_ryp",
    "euler_angles_pry",
    "euler_angles_pyr",
    "euler_angles_yrp",
    "euler_angles_ypr",
]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Part:
    """One named sub-range [start, end) of a state or action column (GR00T's LeRobotStateActionMetadata)."""

    start: int
    end: int
    original_key: str | None = None  # the column; None: observation.state (state) or action (action)
    absolute: bool = True  # False: the part holds deltas
    rotation_type: RotationType | None = None
    dtype: str | None = None
    range: tuple[float, float] | None = None

    def check(self) -> None:
        if not (_is_int(self.start) and _is_int(self.end) and 0 <= self.start < self.end):
            raise ValueError(
                f"start {self.start!r} and end {self.end!r} are not integers with 0 <= start < end "
                "(the part is [start, end) of its vector)"
            )
        if self.range is not None and (len(self.range) != 2 or self.range[0] > self.range[1]):
            raise ValueError(f"range {list(self.range)} is not [low, high] with low <= high")

    def dim_names(self, name: str) -> list[str]:
        return [name] if self.end - self.start == 1 else [f"{name}_{k}" for k in range(self.end - self.start)]


@dataclass(frozen=True)
class Renamed:
    """A video or annotation: the dataset column it is (None: GR00T's default for its name)."""

    original_key: str | None = None


@dataclass(frozen=True)
class Modality:
    """What `meta/modality.json` says, as parsed (`parse_modality`), before it is checked against the
    features of `meta/info.json` (`check_features`)."""

    state: dict[str, Part] = field(default_factory=dict)
    action: dict[str, Part] = field(default_factory=dict)
    video: dict[str, Renamed] = field(default_factory=dict)
    annotation: dict[str, Renamed] = field(default_factory=dict)

    def parts(self, what: str) -> dict[str, Part]:
        return self.state if what == "state" else self.action

    def column(self, what: str, part: Part) -> str:
        return part.original_key or DEFAULT_COLUMNS[what]

    def part(self, what: str, key: str) -> tuple[str, Part] | None:
        """The `what` part `key` names, as `name` or `what.name`; None when it names none."""
        parts = self.parts(what)
        for name in (key, key.removeprefix(f"{what}.") if key.startswith(f"{what}.") else None):
            if name is not None and name in parts:
                return name, parts[name]
        return None

    def dim_names(self, what: str, column: str, width: int) -> list[str | None]:
        """The names the `what` parts give the `width` dims of `column` (None: a dim no part covers)."""
        names: list[str | None] = [None] * width
        for name, part in self.parts(what).items():
            if self.column(what, part) == column:
                names[part.start : part.end] = part.dim_names(name)
        return names[:width]

    def videos(self) -> dict[str, str]:
        """Video name -> its feature key."""
        return {n: v.original_key or f"{IMAGE_PREFIX}{n}" for n, v in self.video.items()}

    def annotation_column(self, key: str) -> str | None:
        """The column of the annotation `key` names (as `name` or `annotation.name`); None if none."""
        for name in (key, key.removeprefix("annotation.")):
            if name in self.annotation:
                return self.annotation[name].original_key or f"annotation.{name}"
        return None

    def check(self) -> None:
        """Parts of one column must not overlap: a dim belongs to one part (and gets one name)."""
        for what in ("state", "action"):
            by_column: dict[str, list[tuple[str, Part]]] = {}
            for name, part in self.parts(what).items():
                if not name:
                    raise ValueError(f"{what} has a part with an empty name")
                by_column.setdefault(self.column(what, part), []).append((name, part))
            for column, parts in by_column.items():
                parts.sort(key=lambda p: (p[1].start, p[1].end))
                for (a, pa), (b, pb) in itertools.pairwise(parts):
                    if pb.start < pa.end:
                        raise ValueError(
                            f"{what} parts {a!r} [{pa.start}, {pa.end}) and {b!r} [{pb.start}, {pb.end}) of "
                            f"{column} overlap: each dim belongs to one part; fix their start/end"
                        )

    def check_features(self, features: dict, where: str) -> None:
        """Every part inside its column (as wide as `features.<column>.shape` says), every video a
        video or image feature. ConfigError naming `where` (modality.json) and the part."""
        for what in ("state", "action"):
            for name, part in self.parts(what).items():
                column = self.column(what, part)
                feature = features.get(column)
                shape = feature.get("shape") if isinstance(feature, dict) else None
                if feature is None:
                    raise ConfigError(
                        f"{where}: {what} part {name!r} is a range of {column!r}, which is not a feature in "
                        f"{INFO_PATH} ({sorted(features)}): fix its original_key"
                    )
                if not (isinstance(shape, list) and len(shape) == 1 and _is_int(shape[0])):
                    raise ConfigError(
                        f"{where}: {what} part {name!r} is a range of {column!r}, whose shape in {INFO_PATH} "
                        f"is {shape!r}, not [width]: give the feature its shape"
                    )
                if part.end > shape[0]:
                    raise ConfigError(
                        f"{where}: {what} part {name!r} is [{part.start}, {part.end}), past the end of "
                        f"{column!r} ({shape[0]} wide in {INFO_PATH}): fix its start/end"
                    )
        cameras = sorted(
            k for k, f in features.items() if isinstance(f, dict) and f.get("dtype") in ("video", "image")
        )
        for name, key in self.videos().items():
            if key not in cameras:
                raise ConfigError(
                    f"{where}: video {name!r} is {key!r}, which is not a video or image feature in "
                    f"{INFO_PATH} (those are {cameras}): fix its original_key"
                )


def parse_modality(data: bytes, where: str) -> Modality:
    """`meta/modality.json`'s bytes, structurally checked (not yet against info.json)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where}: not UTF-8 ({e}); re-write it as UTF-8 JSON") from e
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"{where}: not valid JSON ({str(e)[:200]}); fix or re-export it") from e
    return from_mapping(Modality, doc, where)


@cache
def read_modality(root: str) -> Modality | None:
    """The dataset's `meta/modality.json`, checked against its `meta/info.json`; None when it has none."""
    path = locate("/", root) / MODALITY_PATH
    try:
        data = read_bytes(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it: {e}") from e
    modality = parse_modality(data, str(path))
    info = read_info(root)
    features = info.get("features")
    modality.check_features(features if isinstance(features, dict) else {}, str(path))
    return modality
