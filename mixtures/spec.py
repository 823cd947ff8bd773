"""Mixture files (`mixtures/*.yaml`, DESIGN.md §9): how much of each source a training stage sees.

    name: pi05_pretrain
    stage: pretrain                       # or posttrain
    layouts: [../out/manifest.json]       # manifest paths or URLs, relative to this file
    components:
      - {kind: CE, weight: 30, balance: size}          # every CE dataset, split by their sizes
      - {dataset: mobile_aloha_sim, weight: 2.4, filter: {success: true, max_seconds: 20}}
      - {mixture: other.yaml, weight: 10}              # a nested mixture, scaled as a whole

Loaded with `yaml.safe_load` (an object tag is refused, never run) into frozen typed models; unknown
keys get a "did you mean".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vlamix.config import ConfigError, from_mapping, parse_yaml

__all__ = ["KINDS", "Component", "Filter", "MixtureSpec", "load_mixture"]

KINDS = ("MM", "ME", "CE", "HL", "VI", "WD")


@dataclass(frozen=True)
class Filter:
    """Which samples of a dataset a component takes, by the index's fields."""

    split: str | None = None  # train / val
    success: bool | None = None  # true: successful episodes only
    max_seconds: float | None = None  # episodes shorter than this
    kinds: list[str] | None = None  # sample kinds (MM, HL, ...)

    def check(self) -> None:
        if self.max_seconds is not None and not (math.isfinite(self.max_seconds) and self.max_seconds > 0):
            raise ValueError(f"max_seconds {self.max_seconds} must be a positive number")
        for k in self.kinds or []:
            if k not in KINDS:
                raise ValueError(f"kind {k!r} is not one of {list(KINDS)}")


@dataclass(frozen=True)
class Component:
    """One line of a mixture: a dataset, every dataset of a kind, or a nested mixture file."""

    dataset: str | None = None
    kind: str | None = None
    mixture: str | None = None
    weight: float = 1.0
    balance: Literal["size", "equal"] = "equal"  # how a weight splits over the datasets it reaches
    filter: Filter | None = None

    def check(self) -> None:
        named = [k for k in ("dataset", "kind", "mixture") if getattr(self, k) is not None]
        if len(named) != 1:
            raise ValueError(f"give exactly one of dataset, kind or mixture (got {named or 'none'})")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"weight {self.weight} must be a positive, finite number")
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {list(KINDS)}")

    @property
    def label(self) -> str:
        return self.dataset or (f"kind {self.kind}" if self.kind else f"mixture {self.mixture}")


@dataclass(frozen=True)
class MixtureSpec:
    name: str
    stage: Literal["pretrain", "posttrain"]
    components: list[Component]
    layouts: list[str] | None = None  # a nested mixture may use its parent's layouts
    path: str = ""  # the file it was read from (set by load_mixture)

    def check(self) -> None:
        if not self.components:
            raise ValueError("a mixture needs at least one component")


def load_mixture(path: str | Path) -> MixtureSpec:
    """Read and check one mixture file (not its nested ones: see resolve.py)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such mixture file")
    data = parse_yaml(path.read_bytes(), str(path))
    if isinstance(data, dict):
        data = {**data, "path": str(path.resolve())}
    return from_mapping(MixtureSpec, data, str(path))
