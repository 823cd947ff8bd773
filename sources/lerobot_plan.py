"""How a LeRobot dataset maps onto its embodiment spec, decided once from `meta/info.json` before any
episode is read (a mismatch is a ConfigError naming the file, both sides and the fix):

- state and action dims by NAME: `features.<column>.names` (a list, a {"motors": [...]}-style mapping of
  one list, or null) against the spec's dim names. Columns are reordered to the spec's order; sets that
  disagree are an error. Positions are used only where the dataset names nothing (null or absent
  names); generic names that are not the spec's (`motor_0`, ...) are a disagreement, never a position.
- the declared `fps` against the spec's `control_rate_hz` (sources/frames.py rate_problem);
- cameras onto slots (sources/frames.py plan_cameras: an unknown camera or two on one slot is an error);
- the fields the sources file names (`success:`, `keys: {instruction: ...}`) exist in the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import Dim, Embodiment
from vlamix.sources.config import RobotSource
from vlamix.sources.frames import plan_cameras, rate_problem
from vlamix.sources.lerobot_meta import IMAGE_PREFIX, INFO_PATH
from vlamix.sources.location import Location
from vlamix.sources.success import success_rule

__all__ = ["Columns", "Plan", "plan_dataset"]

_CAMERA_DTYPES = ("video", "image")


@dataclass(frozen=True)
class Columns:
    """The parquet columns of the state (or action), concatenated in this order, and `order`: the
    position in that concatenation of each spec dim (None: the stored order is the spec's)."""

    what: str  # "state" | "action"
    names: tuple[str, ...]
    order: tuple[int, ...] | None = None

    def to_spec(self, values: np.ndarray) -> np.ndarray:
        """(rows, dims) in the spec's dim order (a new array when reordered)."""
        return values if self.order is None else values[:, list(self.order)]


@dataclass(frozen=True)
class Plan:
    fps: float
    state: Columns
    action: Columns
    cameras: dict[str, tuple[str, str]]  # slot -> (feature key, channel order "rgb" | "bgr")


def _features(info: dict, where: Path) -> dict[str, dict]:
    features = info.get("features")
    if not isinstance(features, dict) or not all(isinstance(f, dict) for f in features.values()):
        raise ConfigError(
            f"{where}: `features` is not a mapping of column name to its description; re-export the metadata"
        )
    return features


def _dim_names(feature: dict, column: str, where: Path) -> list[str] | None:
    """A feature's dim names: a list, or a mapping holding one list (v2.0's {"motors": [...]}); None
    when it names nothing."""
    names = feature.get("names")
    if isinstance(names, dict):
        lists = list(names.values())
        if len(lists) != 1:
            raise ConfigError(
                f"{where}: features.{column}.names is a mapping of {len(lists)} lists {sorted(names)}, not "
                'one list of dim names (like {"motors": [...]}): write the names as one list in order'
            )
        names = lists[0]
    if names is None or names == []:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            f"{where}: features.{column}.names is {repr(names)[:80]}, not a list of dim names; fix it"
        )
    return names


def _width(feature: dict) -> int | None:
    shape = feature.get("shape")
    if isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int) and shape[0] > 0:
        return shape[0]
    return None


def _columns(
    what: str,
    keys: str | list[str] | None,
    default: str,
    spec: list[Dim],
    features: dict,
    where: Path,
    emb: str,
) -> Columns:
    columns = [keys] if isinstance(keys, str) else list(keys or [default])
    got: list[str | None] = []  # the data's dim names in stored order; None: a dim it does not name
    unplaced = []
    for col in columns:
        if col not in features:
            raise ConfigError(
                f"{where}: no feature {col!r} for the {what}; the dataset's features are {sorted(features)}: "
                f"set `keys: {{{what}: [...]}}` in the sources file"
            )
        names, width = _dim_names(features[col], col, where), _width(features[col])
        if names is not None and width is not None and len(names) != width:
            raise ConfigError(
                f"{where}: features.{col} has shape [{width}] but names {len(names)} dims {names}; fix one of them"
            )
        if names is None and width is None:
            unplaced.append(col)
        got += names if names is not None else [None] * (width or 0)
    want = [d.name for d in spec]
    if all(n is None for n in got):
        if not unplaced and len(got) != len(want):
            raise ConfigError(
                f"{where}: the {what} columns {columns} hold {len(got)} dims, the embodiment spec {emb} has "
                f"{len(want)} {what} dims {want}: write (or pick) a spec with the dataset's dims, or pick "
                f"other columns with `keys: {{{what}: [...]}}`"
            )
        return Columns(what, tuple(columns))  # the dataset names nothing: positions
    if unplaced:
        raise ConfigError(
            f"{where}: {unplaced} give neither dim names nor a shape, so the named {what} dims of the other "
            f"columns cannot be placed; give every {what} column's `names` in it"
        )
    fix = (
        "Dims are matched by name, never by position: rename the spec's dims to the dataset's (or write a "
        f"spec for this dataset), fix `features.<column>.names` in {INFO_PATH}, or pick other columns with "
        f"`keys: {{{what}: [...]}}` in the sources file"
    )
    shown = [n if n is not None else "?" for n in got]
    if None in got:  # some columns name their dims, some do not: positions, checked where named
        if len(got) != len(want) or any(g is not None and g != w for g, w in zip(got, want, strict=False)):
            raise ConfigError(
                f"{where}: the {what} columns {columns} name their dims {shown} ('?': unnamed), the embodiment "
                f"spec {emb} names its {what} dims {want}. {fix}"
            )
        return Columns(what, tuple(columns))
    repeated = sorted({n for n in got if got.count(n) > 1})
    if repeated:
        raise ConfigError(f"{where}: the {what} columns {columns} name dims {repeated} more than once. {fix}")
    if set(got) != set(want):
        missing = [w for w in want if w not in got]
        extra = [g for g in got if g not in want]
        raise ConfigError(
            f"{where}: the {what} columns {columns} name their dims {shown}, the embodiment spec {emb} names "
            f"its {what} dims {want} (in the spec only: {missing}; in the data only: {extra}). {fix}"
        )
    order = tuple(got.index(w) for w in want)
    return Columns(what, tuple(columns), None if order == tuple(range(len(want))) else order)


def _cameras(features: dict, source: RobotSource, emb: Embodiment, where: Path) -> dict[str, tuple[str, str]]:
    keys = {k.removeprefix(IMAGE_PREFIX): k for k, f in features.items() if f.get("dtype") in _CAMERA_DTYPES}
    plan, problem = plan_cameras(list(keys), source, emb)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    if not plan.slots:
        raise ConfigError(
            f"{where}: no camera maps to a slot: the dataset's cameras are {sorted(keys)}, the embodiment "
            f"spec {emb.name} maps {sorted(emb.cameras)}; map one in the sources file's `keys: {{cameras: ...}}`"
        )
    return {slot: (keys[native], plan.orders[slot]) for slot, native in plan.slots.items()}


def _check_field(setting: str, name: str, features: dict, episodes: list[dict], where: Path) -> None:
    fields = sorted({k for e in episodes for k in e})
    if name not in features and name not in fields:
        raise ConfigError(
            f"{where}: `{setting}` names {name!r}, which is neither a feature of the dataset "
            f"({sorted(features)}) nor a field of its episodes' metadata ({fields}): fix `{setting}` in the "
            "sources file"
        )


def plan_dataset(
    root: Location, info: dict, episodes: list[dict], source: RobotSource, emb: Embodiment
) -> Plan:
    """The plan every episode of the dataset is read by; ConfigError when the dataset and the spec (or
    the sources file) disagree."""
    where = root / INFO_PATH
    features = _features(info, where)
    has_video = any(f.get("dtype") == "video" for f in features.values())
    for key in ("data_path", "video_path") if has_video else ("data_path",):
        if not isinstance(info.get(key), str):
            raise ConfigError(f"{where}: no `{key}` template; re-export the dataset's metadata")
    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, int | float):
        raise ConfigError(f"{where}: fps is {repr(fps)[:40]}, not a number of frames per second")
    problem = rate_problem(float(fps), emb, f"{where}: fps")
    if problem:
        raise ConfigError(problem)
    state = _columns("state", source.keys.state, "observation.state", emb.state, features, where, emb.name)
    action = _columns("action", source.keys.action, "action", emb.action, features, where, emb.name)
    rule = success_rule(source.success)
    if rule is not None:
        _check_field("success", rule.field, features, episodes, where)
    if source.keys.instruction:
        _check_field("keys: {instruction}", source.keys.instruction, features, episodes, where)
    return Plan(float(fps), state, action, _cameras(features, source, emb, where))
