"""How a LeRobot dataset maps onto its embodiment spec, decided once from `meta/info.json` before any
episode is read (a mismatch is a ConfigError naming the file, both sides and the fix):

- state and action dims by NAME: `features.<column>.names` (a list, a {"motors": [...]}-style mapping of
  one list, or null) against the spec's dim names. Columns are reordered to the spec's order; sets that
  disagree are an error. Positions are used only where the dataset names nothing (null or absent
  names); generic names that are not the spec's (`motor_0`, ...) are a disagreement, never a position.
- with `meta/modality.json` (GR00T's flavour, sources/lerobot_modality.py): `keys: {state: [...]}` may
  name its parts (`gripper` or `state.gripper`) as well as columns, each read as its [start, end) and
  concatenated in the order given (so parts can be reordered or left out); the dims are also named
  after their parts (`single_arm_0`, ..., `gripper`), and match the spec if info.json's names do not;
  its video names are camera names too, and `keys: {instruction}` may name one of its annotations.
- the declared `fps` against the spec's `control_rate_hz` (sources/frames.py rate_problem);
- cameras onto slots (sources/frames.py plan_cameras: an unknown camera or two on one slot is an error);
- the fields the sources file names (`success:`, `keys: {instruction: ...}`) exist in the dataset.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import Dim, Embodiment
from vlamix.sources.config import RobotSource
from vlamix.sources.environment import environment_field
from vlamix.sources.frames import plan_cameras, rate_problem
from vlamix.sources.lerobot_meta import IMAGE_PREFIX, INFO_PATH
from vlamix.sources.lerobot_modality import MODALITY_PATH, Modality, read_modality
from vlamix.sources.location import Location
from vlamix.sources.success import success_rule

__all__ = ["Columns", "Cut", "Plan", "plan_dataset"]

_CAMERA_DTYPES = ("video", "image")


@dataclass(frozen=True)
class Cut:
    """The dims [start, end) of a column `width` wide (meta/info.json) that a meta/modality.json part is."""

    part: str
    start: int
    end: int
    width: int


@dataclass(frozen=True)
class Columns:
    """The parquet columns of the state (or action), concatenated in this order (each whole, or the
    part of it in `cuts`), and `order`: the position in that concatenation of each spec dim (None: the
    stored order is the spec's)."""

    what: str  # "state" | "action"
    names: tuple[str, ...]
    order: tuple[int, ...] | None = None
    cuts: tuple[Cut | None, ...] | None = None  # per name: the part of the column read (None: all)

    def to_spec(self, values: np.ndarray) -> np.ndarray:
        """(rows, dims) in the spec's dim order (a new array when reordered)."""
        return values if self.order is None else values[:, list(self.order)]


@dataclass(frozen=True)
class Plan:
    fps: float
    state: Columns
    action: Columns
    cameras: dict[str, tuple[str, str]]  # slot -> (feature key, channel order "rgb" | "bgr")
    # `keys: {instruction}` names a modality.json annotation: its column, of task indices like task_index
    task_column: str | None = None


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


def _pieces(
    what: str,
    keys: str | list[str] | None,
    default: str,
    features: dict,
    where: Path,
    modality: Modality | None,
) -> tuple[list[str], list[Cut | None]]:
    """The column each key reads, and the part of it (`keys` may name meta/modality.json parts)."""
    columns: list[str] = []
    cuts: list[Cut | None] = []
    for key in [keys] if isinstance(keys, str) else list(keys or [default]):
        found = modality.part(what, key) if modality is not None else None
        if found is not None:
            name, part = found
            column = modality.column(what, part)  # type: ignore[union-attr]
            columns.append(column)
            cuts.append(Cut(name, part.start, part.end, features[column]["shape"][0]))
        elif key in features:
            columns.append(key)
            cuts.append(None)
        elif modality is None:
            raise ConfigError(
                f"{where}: no feature {key!r} for the {what}; the dataset's features are {sorted(features)}: "
                f"set `keys: {{{what}: [...]}}` in the sources file"
            )
        else:
            raise ConfigError(_no_part(what, key, features, where, modality))
    return columns, cuts


def _no_part(what: str, key: str, features: dict, where: Path, modality: Modality) -> str:
    other = "action" if what == "state" else "state"
    parts = sorted(modality.parts(what))
    close = difflib.get_close_matches(key.removeprefix(f"{what}."), parts, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    wrong = f"; {key!r} is a {other} part, not a {what} one" if modality.part(other, key) else ""
    return (
        f"{where.parent.parent / MODALITY_PATH}: no {what} part {key!r}{hint}{wrong}: its {what} parts are "
        f"{parts} (as `name` or `{what}.name`), and {INFO_PATH} has no feature {key!r} either (its features: "
        f"{sorted(features)}); fix `keys: {{{what}: [...]}}` in the sources file"
    )


def _overlap(
    what: str, labels: list[str], columns: list[str], cuts: list[Cut | None], features: dict
) -> None:
    """Keys that read one dim twice (two parts of a column that overlap, or a part and its whole column)."""
    spans = []
    for label, column, cut in zip(labels, columns, cuts, strict=True):
        width = _width(features[column])
        if cut is not None or width is not None:
            spans.append((column, cut.start if cut else 0, cut.end if cut else width, label))
    spans.sort()
    for (col_a, _, end_a, a), (col_b, start_b, _, b) in itertools.pairwise(spans):
        if col_a == col_b and start_b < end_a:
            raise ConfigError(
                f"the sources file's `keys: {{{what}: {labels}}}` reads dims of {col_a!r} twice ({a!r} and "
                f"{b!r} overlap): name each part once"
            )


def _columns(
    what: str,
    keys: str | list[str] | None,
    default: str,
    spec: list[Dim],
    features: dict,
    where: Path,
    emb: str,
    modality: Modality | None = None,
) -> Columns:
    columns, cuts = _pieces(what, keys, default, features, where, modality)
    labels = [cut.part if cut else col for col, cut in zip(columns, cuts, strict=True)]
    if any(cuts):
        _overlap(what, labels, columns, cuts, features)
    got: list[str | None] = []  # the data's dim names in stored order; None: a dim it does not name
    parted: list[str | None] | None = [] if modality is not None else None  # the parts' names of them
    unplaced = []
    for col, cut in zip(columns, cuts, strict=True):
        names, width = _dim_names(features[col], col, where), _width(features[col])
        if names is not None and width is not None and len(names) != width:
            raise ConfigError(
                f"{where}: features.{col} has shape [{width}] but names {len(names)} dims {names}; fix one of them"
            )
        lo, hi = (cut.start, cut.end) if cut else (0, len(names) if names is not None else width)
        if names is None and hi is None:
            unplaced.append(col)
        got += names[lo:hi] if names is not None else [None] * ((hi or 0) - lo)
        if parted is not None:
            whole = cut.width if cut else hi
            parted = None if whole is None else parted + modality.dim_names(what, col, whole)[lo:hi]  # type: ignore[union-attr]
    want = [d.name for d in spec]
    packed = tuple(cuts) if any(cuts) else None
    by_parts = where.parent.parent / MODALITY_PATH
    if parted is None or all(n is None for n in parted):
        order = _order(what, labels, got, want, unplaced, where, emb)
    elif all(n is None for n in got):  # info.json names nothing: the parts' names
        order = _order(what, labels, parted, want, [], by_parts, emb)
    else:  # info.json's names, else the parts'
        try:
            order = _order(what, labels, got, want, unplaced, where, emb)
        except ConfigError as e:
            try:
                order = _order(what, labels, parted, want, [], by_parts, emb)
            except ConfigError:
                shown = [n if n is not None else "?" for n in parted]
                raise ConfigError(
                    f"{e} Nor do the names {MODALITY_PATH} gives them by part match the spec: {shown}"
                ) from None
    return Columns(what, tuple(columns), order, packed)


def _order(
    what: str,
    columns: list[str],
    got: list[str | None],
    want: list[str],
    unplaced: list[str],
    where: Path,
    emb: str,
) -> tuple[int, ...] | None:
    """The position in `got` of each spec dim (None: the stored order is the spec's); ConfigError when
    the names disagree."""
    if all(n is None for n in got):
        if not unplaced and len(got) != len(want):
            raise ConfigError(
                f"{where}: the {what} columns {columns} hold {len(got)} dims, the embodiment spec {emb} has "
                f"{len(want)} {what} dims {want}: write (or pick) a spec with the dataset's dims, or pick "
                f"other columns with `keys: {{{what}: [...]}}`"
            )
        return None  # the dataset names nothing: positions
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
        return None
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
    return None if order == tuple(range(len(want))) else order


def _camera_name(aliases: list[str], source: RobotSource, emb: Embodiment, where: Path) -> str:
    """The name a camera with several (its modality.json video names, then its feature key without
    `observation.images.`) goes by: the first the sources file's keys map, else the first the spec maps,
    else the first (for the error that names it unmapped)."""
    for table, whose in (
        (source.keys.cameras, "the sources file's `keys: {cameras}`"),
        (emb.cameras, emb.name),
    ):
        mapped = [a for a in aliases if a in table]
        if any(table[a] != table[mapped[0]] for a in mapped):
            raise ConfigError(
                f"{where.parent.parent / MODALITY_PATH}: {mapped} are names of one camera, and {whose} maps "
                f"them differently ({[table[a] for a in mapped]}): map one of them"
            )
        if mapped:
            return mapped[0]
    return aliases[0]


def _cameras(
    features: dict, source: RobotSource, emb: Embodiment, where: Path, modality: Modality | None = None
) -> dict[str, tuple[str, str]]:
    keys = {k.removeprefix(IMAGE_PREFIX): k for k, f in features.items() if f.get("dtype") in _CAMERA_DTYPES}
    if modality is not None:  # a camera goes by its modality.json name too
        videos = modality.videos()
        named = {
            _camera_name([*(n for n, k in videos.items() if k == key), native], source, emb, where): key
            for native, key in keys.items()
        }
        if len(named) < len(keys):
            raise ConfigError(
                f"{where.parent.parent / MODALITY_PATH}: two cameras of {sorted(keys.values())} go by one name "
                f"(video names {videos}): rename the video in it"
            )
        keys = named
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
    modality = read_modality(str(root))
    keys = source.keys
    state = _columns("state", keys.state, "observation.state", emb.state, features, where, emb.name, modality)
    action = _columns("action", keys.action, "action", emb.action, features, where, emb.name, modality)
    rule = success_rule(source.success)
    if rule is not None:
        _check_field("success", rule.field, features, episodes, where)
    field = environment_field(source.environment)
    if field is not None and field != "task":  # `task`: the episode's task, always there
        _check_field("environment", field, features, episodes, where)
    task_column = None
    if keys.instruction:
        task_column = modality.annotation_column(keys.instruction) if modality is not None else None
        _check_field("keys: {instruction}", task_column or keys.instruction, features, episodes, where)
    cameras = _cameras(features, source, emb, where, modality)
    return Plan(float(fps), state, action, cameras, task_column)
