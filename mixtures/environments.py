"""Environments in mixtures (docs/design.md §24): which rooms a component draws from, the seeded nested
choice of N of them, the filter's row mask, and the check that a held-out pair shares no room.

- **The seeded order.** Environment e ranks by blake2b(f"{seed}\\0{e}") (ties by name): a total order
  that does not depend on N, so the first N rooms are always within the first N + 1 (a sweep over N is a
  true scaling curve), and a room added to the layouts moves none of the others.
- **One choice per mixture file and seed.** Every component of one file that asks for `{count: N, seed:
  S}` takes its rooms from the same order over the same pool: every environment of every dataset those
  components reach (from the manifests' `environments`). A component takes the first N rooms of that
  order it does not exclude. So ME episodes and the HL spans over them are cut to the same rooms.
- **Rows.** `environments` keeps the rows recorded in one of the rooms (rows without an environment
  leave); `exclude_environments` drops the rows of those rooms (rows without one stay).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from difflib import get_close_matches
from typing import Protocol

import numpy as np
import pyarrow as pa

from vlamix.mixtures.spec import Component, EnvironmentCount, Filter, MixtureSpec

__all__ = [
    "Catalogue",
    "Choice",
    "by_environment",
    "choose",
    "component_where",
    "counted",
    "environment_filters",
    "environment_mask",
    "environment_order",
    "environments_of",
    "rows_by_environment",
    "shared_environments",
]


def environment_order(names: Iterable[str], seed: int) -> list[str]:
    """`names` (each once) in the seeded order: by blake2b of the seed and the name, ties by name."""

    def rank(name: str) -> tuple[bytes, str]:
        return hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=16).digest(), name

    return sorted(set(names), key=rank)


@dataclass(frozen=True)
class Choice:
    """What one component's `{count, seed}` chose: its rooms, in the seeded order, from the pool."""

    component: str  # where in the file (`FILE: components[i] (label)`)
    count: int
    seed: int
    environments: list[str]
    pool: list[str] = field(default_factory=list)  # what it chose from (after its exclusions), in order


def choose(pool: Iterable[str], count: EnvironmentCount, exclude: Iterable[str] = ()) -> list[str]:
    """The first `count.count` rooms of the seeded order over `pool` less `exclude` (fewer when the pool
    has fewer: the caller names that a problem)."""
    left = set(pool) - set(exclude)
    return environment_order(left, count.seed)[: count.count]


def environments_of(manifest_entry: dict) -> dict[str, int]:
    """A dataset's environments with their episodes, as its manifest lists them ({} for an older layout
    or a dataset without any)."""
    return dict(manifest_entry.get("environments") or {})


class Catalogue(Protocol):
    """What the choice needs of the layouts (resolve.py's catalogue)."""

    def environments(self) -> set[str]: ...

    def reached(self, comp: Component) -> list[str]: ...

    def entry(self, name: str) -> dict: ...


def counted(components: Sequence[Component | None]) -> dict[int, EnvironmentCount]:
    """Component position -> its `{count, seed}`, for the components that ask for one."""
    return {
        i: c.filter.environments
        for i, c in enumerate(components)
        if c is not None and c.filter is not None and isinstance(c.filter.environments, EnvironmentCount)
    }


def environment_mask(table: pa.Table, f: Filter) -> np.ndarray:
    """Rows of an index `table` that `f`'s environment settings keep (`environments` must be a list of
    names by now: resolve turns a count into the rooms it chose)."""
    mask = np.ones(table.num_rows, bool)
    if f.environments is None and not f.exclude_environments:
        return mask
    envs = np.asarray(table.column("environment").to_pylist(), dtype=object)
    if isinstance(f.environments, list):
        mask &= np.isin(envs, np.asarray(f.environments, dtype=object))
    if f.exclude_environments:
        mask &= ~np.isin(envs, np.asarray(f.exclude_environments, dtype=object))
    return mask


def by_environment(f: Filter | None) -> bool:
    """Whether `f` selects by environment (a dataset it empties then drops out with a warning)."""
    return f is not None and (f.environments is not None or bool(f.exclude_environments))


def component_where(spec: MixtureSpec, i: int, comp: Component) -> str:
    """How problems name a component: `FILE: components[i] (label)`."""
    return f"{spec.path}: components[{i}] ({comp.label})"


def environment_filters(
    spec: MixtureSpec, cat: Catalogue, problems: list[str], choices: list[Choice]
) -> dict[int, Filter | None]:
    """Component position -> its filter with `{count, seed}` turned into the rooms chosen (appended to
    `choices`), or None when it cannot be resolved: an environment no dataset of the layouts has, or more
    rooms asked for than the pool holds (each appended to `problems`)."""
    known = cat.environments()
    out: dict[int, Filter | None] = {}
    for i, comp in enumerate(spec.components):
        if comp is None or comp.filter is None:
            continue
        for env in (e for e in comp.filter.named_environments if e not in known):
            close = get_close_matches(env, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (the layouts have {sorted(known)})"
            problems.append(f"{component_where(spec, i, comp)}: unknown environment {env!r}{hint}")
            out[i] = None
    counts = counted(spec.components)
    pools: dict[int, set[str]] = {}
    for i, count in counts.items():  # one pool per seed: every room the counted components reach
        reached = cat.reached(spec.components[i])  # type: ignore[arg-type]  # counted() skips None
        pools.setdefault(count.seed, set()).update(
            env for n in reached for env in environments_of(cat.entry(n))
        )
    for i, count in counts.items():
        comp = spec.components[i]
        if i in out or comp is None or comp.filter is None:
            continue
        exclude = comp.filter.exclude_environments or []
        pool = environment_order(pools[count.seed] - set(exclude), count.seed)
        chosen = choose(pools[count.seed], count, exclude)
        where = component_where(spec, i, comp)
        if len(chosen) < count.count:
            problems.append(
                f"{where}: asks for {count.count} environments (seed {count.seed}); the datasets this file's "
                f"counted components reach have {len(pool)}: {pool}"
            )
            out[i] = None
            continue
        choices.append(Choice(where, count.count, count.seed, chosen, pool))
        out[i] = replace(comp.filter, environments=chosen)
    return out


def rows_by_environment(tables: Iterable[tuple[str, pa.Table]]) -> dict[str, list[str]]:
    """environment -> the datasets (labels) whose rows are recorded there, from (label, rows) pairs."""
    out: dict[str, set[str]] = {}
    for label, rows in tables:
        for env in {e for e in rows.column("environment").to_pylist() if e is not None}:
            out.setdefault(env, set()).add(label)
    return {env: sorted(labels) for env, labels in sorted(out.items())}


def shared_environments(
    mine: dict[str, list[str]], theirs: dict[str, list[str]], path: str, other: str
) -> list[str]:
    """One problem per room both mixtures draw from, naming the room and the datasets on each side."""
    return [
        f"{path}: heldout_of {other}: both mixtures draw from environment {env!r} (this one through "
        f"{', '.join(mine[env])}; the other through {', '.join(theirs[env])}): a held-out environment must "
        "not be trained on; filter it out with `exclude_environments`"
        for env in sorted(set(mine) & set(theirs))
    ]
