"""Mixture files (`mixtures/*.yaml`, docs/design.md §9): how much of each source a training stage sees.

    name: pi05_pretrain
    stage: pretrain                       # or posttrain
    layouts: [../out/manifest.json]       # manifest paths or URLs, relative to this file
    components:
      - {kind: CE, weight: 30, balance: size}          # every CE dataset, split by their sizes
      - {dataset: mobile_aloha_sim, weight: 2.4, filter: {success: true, max_seconds: 20}}
      - {mixture: other.yaml, weight: 10}              # a nested mixture, scaled as a whole
      - {kind: ME, weight: 20, filter: {environments: {count: 2, seed: 0}}}   # 2 rooms, seeded (§24)
    heldout_of: specialist.yaml           # optional: must share no environment with this mixture

Loaded with `yaml.safe_load` (an object tag is refused, never run) into frozen typed models; unknown
keys get a "did you mean". `read_mixture` lists every schema problem of a file (each unknown key, each
bad value, each component on its own); `load_mixture` raises them all in one error.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from vlamix.config import ConfigError, from_mapping, parse_yaml

__all__ = ["KINDS", "Component", "EnvironmentCount", "Filter", "MixtureSpec", "load_mixture", "read_mixture"]

KINDS = ("MM", "ME", "CE", "HL", "VI", "WD")


@dataclass(frozen=True)
class EnvironmentCount:
    """`environments: {count: N, seed: S}`: the first N environments of a seeded order over the rooms the
    mixture's counted components reach, so N rooms are within N + 1 (docs/design.md §24)."""

    count: int
    seed: int = 0

    def problems(self) -> list[str]:
        if isinstance(self.count, bool) or self.count < 1:
            return [f"environments count {self.count!r} must be a whole number >= 1"]
        return (
            [f"environments seed {self.seed!r} must be a whole number"] if isinstance(self.seed, bool) else []
        )


@dataclass(frozen=True)
class Filter:
    """Which samples of a dataset a component takes, by the index's fields."""

    split: str | None = None  # train / val
    success: bool | None = None  # true: successful episodes only
    max_seconds: float | None = None  # episodes shorter than this
    kinds: list[str] | None = None  # sample kinds (MM, HL, ...)
    # where the episodes were recorded: these names, or N of them in a seeded, nested order
    environments: list[str] | EnvironmentCount | None = None
    exclude_environments: list[str] | None = None  # never these (rows without an environment stay)

    def problems(self) -> list[str]:
        out = []
        if self.max_seconds is not None and not (math.isfinite(self.max_seconds) and self.max_seconds > 0):
            out.append(f"max_seconds {self.max_seconds} must be a positive number")
        out += [f"kind {k!r} is not one of {list(KINDS)}" for k in self.kinds or [] if k not in KINDS]
        if isinstance(self.environments, EnvironmentCount):
            out += self.environments.problems()
        elif self.environments is not None and not self.environments:
            out.append("environments: [] selects nothing; name environments or leave the key out")
        chosen = self.environments if isinstance(self.environments, list) else []
        both = sorted(set(chosen) & set(self.exclude_environments or []))
        out += [f"environment {e!r} is both in environments and exclude_environments" for e in both]
        return out

    @property
    def named_environments(self) -> list[str]:
        """The environments this filter names (to select or to leave out)."""
        named = self.environments if isinstance(self.environments, list) else []
        return [*named, *(self.exclude_environments or [])]

    def check(self) -> None:
        if problems := self.problems():
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class Component:
    """One line of a mixture: a dataset, every dataset of a kind, or a nested mixture file."""

    dataset: str | None = None
    kind: str | None = None
    mixture: str | None = None
    weight: float = 1.0
    balance: Literal["size", "equal"] = "equal"  # how a weight splits over the datasets it reaches
    filter: Filter | None = None

    def problems(self) -> list[str]:
        out = []
        named = [k for k in ("dataset", "kind", "mixture") if getattr(self, k) is not None]
        if len(named) != 1:
            out.append(f"give exactly one of dataset, kind or mixture (got {named or 'none'})")
        if not (math.isfinite(self.weight) and self.weight > 0):
            out.append(f"weight {self.weight} must be a positive, finite number")
        if self.kind is not None and self.kind not in KINDS:
            out.append(f"kind {self.kind!r} is not one of {list(KINDS)}")
        return out

    def check(self) -> None:
        if problems := self.problems():
            raise ValueError("; ".join(problems))

    @property
    def label(self) -> str:
        return self.dataset or (f"kind {self.kind}" if self.kind else f"mixture {self.mixture}")


@dataclass(frozen=True)
class MixtureSpec:
    name: str
    stage: Literal["pretrain", "posttrain"]
    components: list[Component]
    layouts: list[str] | None = None  # a nested mixture may use its parent's layouts
    heldout_of: str | None = None  # a mixture (file) this one must share no environment with
    path: str = ""  # the file it was read from (set by read_mixture)

    def problems(self) -> list[str]:
        return [] if self.components else ["a mixture needs at least one component"]

    def check(self) -> None:
        if problems := self.problems():
            raise ValueError("; ".join(problems))


def _nested(tp: Any) -> tuple[str, type] | None:
    """("list", C) for a `list[C]` field, ("one", C) for a `C | None` field, C a dataclass; else None."""
    args = typing.get_args(tp)
    if (
        typing.get_origin(tp) is list
        and args
        and isinstance(args[0], type)
        and dataclasses.is_dataclass(args[0])
    ):
        return "list", args[0]
    for arg in (tp, *args):
        if isinstance(arg, type) and dataclasses.is_dataclass(arg):
            return "one", arg
    return None


@cache
def _probe(cls: type, name: str) -> type:
    """A dataclass with only field `name` of `cls` (no check): `from_mapping` converts that value alone."""
    return dataclasses.make_dataclass(f"{cls.__name__}_{name}", [(name, typing.get_type_hints(cls)[name])])


def _unknown_key(cls: type, key: Any, where: str) -> str:
    """config's own "unknown key ... did you mean" message (from_mapping checks the keys first)."""
    try:
        from_mapping(cls, {key: None}, where)
    except ConfigError as e:
        return str(e)
    return f"{where}: unknown key {key!r}"  # pragma: no cover - from_mapping refuses unknown keys


def _collect(cls: type, data: Any, where: str) -> tuple[Any | None, dict, list[str]]:
    """`from_mapping(cls, data, where)` that lists every problem instead of raising the first: each
    unknown key, each value that does not convert (every item of a list of configs and every nested
    config on its own), each missing key, then every `problems()` of the built object. Returns the object
    (None when a value is bad or missing, or it has problems), the values that converted (a list of
    configs keeps its places: None for a bad item), and the problems."""
    if not isinstance(data, dict):
        return None, {}, [f"{where}: expected a mapping, got {type(data).__name__}"]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict = {}
    problems: list[str] = []
    usable = True
    checkable = True  # its own checks still say something (a bad nested config is left at its default)
    left_out: set[str] = set()
    for key, value in data.items():
        if key not in fields:  # the other keys still tell whether the object is usable
            problems.append(_unknown_key(cls, key, where))
            continue
        nested = _nested(hints[key])
        if nested is not None and isinstance(value, list if nested[0] == "list" else dict):
            parts = (
                [_collect(nested[1], v, f"{where}.{key}[{i}]") for i, v in enumerate(value)]
                if nested[0] == "list"
                else [_collect(nested[1], value, f"{where}.{key}")]
            )
            for _, _, p in parts:
                problems += p
            good = [obj for obj, _, _ in parts if obj is not None]
            values[key] = [obj for obj, _, _ in parts] if nested[0] == "list" else (good[0] if good else None)
            if len(good) < len(parts):
                usable = False
                checkable &= not _required(fields[key])
                left_out.add(key)
            continue
        try:
            values[key] = getattr(from_mapping(_probe(cls, key), {key: value}, where), key)
        except ConfigError as e:
            problems.append(str(e))
            usable = checkable = False
    for name, f in fields.items():
        if name not in data and _required(f):
            problems.append(f"{where}: missing required key {name!r}")
            usable = checkable = False
    if not checkable:
        return None, values, problems
    obj = cls(**{k: v for k, v in values.items() if k not in left_out})
    checks = [f"{where}: {p}" for p in obj.problems()] if hasattr(obj, "problems") else []
    return (obj if usable and not checks else None), values, problems + checks


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def read_mixture(path: str | Path) -> tuple[MixtureSpec, list[str]]:
    """Read one mixture file (not its nested ones: see resolve.py) and list every schema problem, each
    naming the file and the key or component (`bad.yaml.components[2].weight: ...`). With problems the
    spec is partial, only good for finding further problems: a bad component is None in its place, a
    bad name is the file's stem, a bad stage None. A file that is missing, not YAML or not a
    mapping raises ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such mixture file")
    data = parse_yaml(path.read_bytes(), str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(data).__name__}")
    spec, values, problems = _collect(MixtureSpec, {**data, "path": str(path.resolve())}, str(path))
    if spec is None:
        spec = MixtureSpec(
            name=values.get("name", path.stem),
            stage=values.get("stage"),  # type: ignore[arg-type]  # partial: no stage-specific warnings
            components=values.get("components", []),
            layouts=values.get("layouts"),
            heldout_of=values.get("heldout_of"),
            path=values["path"],
        )
    return spec, problems


def load_mixture(path: str | Path) -> MixtureSpec:
    """Read and check one mixture file (not its nested ones: see resolve.py); every schema problem is
    in the one ConfigError it raises."""
    spec, problems = read_mixture(path)
    if problems:
        raise ConfigError("; ".join(problems))
    return spec
