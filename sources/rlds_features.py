"""The features of an RLDS / TFDS dataset (its `features.json`), and the sources file's keys resolved
against them once per dataset: which features hold the state, the action, the instruction, the success
value, the timestamps, and which camera fills which slot.

A key may be given as the full feature name (`steps/observation/image_0`), without `steps/`
(`observation/image_0`), as the last part of the name when exactly one feature ends so (`image_0`), and
a camera also relative to `steps/observation/` (`images/wrist`); an ambiguous or unknown key is a
ConfigError that lists the candidates or the features.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import CAMERA_SLOTS, Embodiment
from vlamix.sources.config import CameraKey, RobotSource, SuccessRule
from vlamix.sources.environment import environment_field
from vlamix.sources.frames import plan_cameras
from vlamix.sources.location import Location, is_remote, locate, read_bytes
from vlamix.sources.success import success_rule

__all__ = [
    "ACTION_KEY",
    "FEATURES_FILE",
    "INSTRUCTION_KEY",
    "OBSERVATION_PREFIX",
    "STATE_KEY",
    "TIMESTAMP_KEYS",
    "Feature",
    "RldsKeys",
    "read_features",
    "resolve_key",
    "resolve_keys",
]

FEATURES_FILE = "features.json"
STATE_KEY = "steps/observation/state"
ACTION_KEY = "steps/action"
INSTRUCTION_KEY = "steps/language_instruction"
OBSERVATION_PREFIX = "steps/observation/"
TIMESTAMP_KEYS = ("steps/observation/timestamp", "steps/timestamp")
_NOT_NUMBERS = ("bool", "string")


@dataclass(frozen=True)
class Feature:
    name: str  # flattened name, e.g. steps/observation/image_0
    kind: str  # Tensor, Scalar, Image, Text
    dtype: str
    shape: tuple[int, ...]


def _walk(node: dict, path: list[str], out: dict[str, Feature]) -> None:
    if "featuresDict" in node:
        for key, child in node["featuresDict"]["features"].items():
            _walk(child, [*path, key], out)
    elif "sequence" in node:
        _walk(node["sequence"]["feature"], path, out)
    else:
        kind = node.get("pythonClassName", "").rsplit(".", 1)[-1].replace("Feature", "") or "Tensor"
        spec = node.get("tensor") or node.get("image") or {}
        dims = tuple(int(d) for d in (spec.get("shape") or {}).get("dimensions", []))
        name = "/".join(path)
        out[name] = Feature(name, kind, spec.get("dtype", "string" if kind == "Text" else "float32"), dims)


def read_features(folder: Location) -> dict[str, Feature]:
    """The features `features.json` in `folder` declares (a remote one read once per process)."""
    if is_remote(folder):
        return dict(_remote_features(str(folder)))
    return _parse_features(folder)


@lru_cache(maxsize=16)
def _remote_features(folder: str) -> tuple[tuple[str, Feature], ...]:
    return tuple(_parse_features(locate("/", folder)).items())


def _parse_features(folder: Location) -> dict[str, Feature]:
    try:
        text = read_bytes(folder / FEATURES_FILE)
    except FileNotFoundError as e:
        raise ConfigError(
            f"{folder}: no {FEATURES_FILE} (the TFDS metadata that names the features); point `path` at the dataset folder"
        ) from e
    features: dict[str, Feature] = {}
    _walk(json.loads(text), [], features)
    return features


def resolve_key(
    name: str, names: Iterable[str], what: str, where: str, fix: str = "", camera: bool = False
) -> str:
    """The feature `name` means among `names` (see the module doc); ConfigError naming the candidates
    when it is ambiguous, the features when it matches none (then `fix`, the way out). A `camera` may
    also be named relative to `steps/observation/` (as the embodiment specs name cameras)."""
    known = sorted(names)
    forms = (name, f"steps/{name}", f"{OBSERVATION_PREFIX}{name}") if camera else (name, f"steps/{name}")
    for candidate in forms:
        if candidate in known:
            return candidate
    if "/" not in name:
        ends = [k for k in known if k.rsplit("/", 1)[-1] == name]
        if len(ends) == 1:
            return ends[0]
        if ends:
            raise ConfigError(
                f"{where}: {what} {name!r} is ambiguous: it ends {len(ends)} feature names {ends}; "
                "give the full feature name"
            )
    last = {k.rsplit("/", 1)[-1]: k for k in known}
    close = difflib.get_close_matches(name.rsplit("/", 1)[-1], list(last), n=1)
    hint = f" (did you mean {last[close[0]]!r}?)" if close else ""
    raise ConfigError(f"{where}: {what} {name!r} is no feature{hint}; the features are {known}{fix}")


@dataclass(frozen=True)
class RldsKeys:
    """The sources file's keys as feature names of one dataset."""

    state: list[str]
    action: list[str]
    instruction: str | None  # None: no instruction feature (the sources file's `task:` gives the task)
    cameras: dict[str, str]  # slot -> feature name, in slot order
    orders: dict[str, str]  # slot -> channel order (rgb | bgr)
    success: bool | SuccessRule | None  # a constant, or the rule with its field resolved
    timestamp: str | None
    environment: str | None = None  # the feature an `environment: {field: ...}` names (episode_metadata/...)


def _as_list(value: str | list[str] | None, default: str) -> list[str]:
    return [value] if isinstance(value, str) else (value or [default])


def _numeric(keys: list[str], features: dict[str, Feature], what: str, where: str) -> list[str]:
    fix = f"; set `keys: {{{what}: ...}}` to the feature(s) holding it"
    out = [resolve_key(k, features, f"{what} key", where, fix) for k in keys]
    for key in out:
        f = features[key]
        if f.kind in ("Image", "Text") or f.dtype in _NOT_NUMBERS:
            raise ConfigError(
                f"{where}: {what} feature {key} is {f.kind} of {f.dtype}, not numbers; name the numeric "
                f"feature in `keys: {{{what}: ...}}`"
            )
    return out


def _instruction(source: RobotSource, features: dict[str, Feature], where: str) -> str | None:
    if source.keys.instruction:
        key = resolve_key(source.keys.instruction, features, "instruction key", where)
    elif INSTRUCTION_KEY in features:
        key = INSTRUCTION_KEY
    elif source.task:
        return None
    else:
        raise ConfigError(
            f"{where}: no task for these episodes: there is no {INSTRUCTION_KEY} feature and the sources "
            "file sets neither `keys: {instruction: ...}` nor `task:`, so every episode would train on an "
            "empty prompt; name the instruction feature or set `task:`"
        )
    f = features[key]
    if f.kind != "Text" and f.dtype != "string":
        raise ConfigError(f"{where}: instruction feature {key} is {f.kind} of {f.dtype}, not text")
    return key


def _environment(source: RobotSource, features: dict[str, Feature], where: str) -> str | None:
    """The text feature an `environment: {field: ...}` names (an episode_metadata/... one, as a rule)."""
    name = environment_field(source.environment)
    if name is None:
        return None
    key = resolve_key(name, features, "environment field", where, "; fix `environment: {field: ...}`")
    f = features[key]
    if f.kind != "Text" and f.dtype != "string":
        raise ConfigError(f"{where}: environment feature {key} is {f.kind} of {f.dtype}, not text")
    return key


def _cameras(
    source: RobotSource, emb: Embodiment, features: dict[str, Feature], where: str
) -> tuple[dict[str, str], dict[str, str]]:
    images = sorted(k for k, f in features.items() if f.kind == "Image" and k.startswith(OBSERVATION_PREFIX))
    natives = [k[len(OBSERVATION_PREFIX) :] for k in images]
    mapped: dict[str, str | CameraKey | None] = {}
    for name, value in source.keys.cameras.items():
        native = resolve_key(name, images, "camera key", where, camera=True)[len(OBSERVATION_PREFIX) :]
        if native in mapped:
            raise ConfigError(f"{where}: `keys: {{cameras: ...}}` names camera {native!r} twice")
        mapped[native] = value
    planned = dataclasses.replace(source, keys=dataclasses.replace(source.keys, cameras=mapped))
    plan, problem = plan_cameras(natives, planned, emb)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    if not plan.slots:
        raise ConfigError(
            f"{where}: no camera maps to a slot (cameras {natives}; spec {emb.name} knows {sorted(emb.cameras)})"
        )
    slots = [s for s in CAMERA_SLOTS if s in plan.slots]
    return {s: OBSERVATION_PREFIX + plan.slots[s] for s in slots}, {s: plan.orders[s] for s in slots}


def resolve_keys(features: dict[str, Feature], source: RobotSource, emb: Embodiment, where: str) -> RldsKeys:
    """Every key of `source` as a feature of `features` (`where` names features.json in errors); raises
    ConfigError for a key that names no feature, or several, and for cameras that do not map."""
    rule = success_rule(source.success)
    success = (
        SuccessRule(resolve_key(rule.field, features, "success field", where), rule.reduce)
        if rule
        else source.success
    )
    cameras, orders = _cameras(source, emb, features, where)
    return RldsKeys(
        state=_numeric(_as_list(source.keys.state, STATE_KEY), features, "state", where),
        action=_numeric(_as_list(source.keys.action, ACTION_KEY), features, "action", where),
        instruction=_instruction(source, features, where),
        cameras=cameras,
        orders=orders,
        success=success,  # type: ignore[arg-type]
        timestamp=next((k for k in TIMESTAMP_KEYS if k in features), None),
        environment=_environment(source, features, where),
    )
