"""A mixture file -> the datasets it reads, each with its filter, its share of the draws and the rows of
its index that pass the filter. Reads only manifests and indexes (never a shard).

Weights: a component's weight splits over the datasets it reaches (equally, or by their filtered sample
counts with `balance: size`); a nested mixture's shares are scaled by its component's weight; the same
dataset with the same filter reached by two paths becomes one entry with the summed weight. Shares are
the weights divided by their sum.

Environments (mixtures/environments.py): a `{count, seed}` filter becomes the rooms it chose (listed in
`Resolved.choices`); a dataset an environment filter leaves without rows drops out of its component with
a warning (a problem when none is left); names that no dataset of the layouts has are problems; with
`heldout_of: OTHER.yaml`, every room both mixtures draw from is a problem."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlamix.config import ConfigError
from vlamix.mixtures.environments import (
    Choice,
    by_environment,
    component_where,
    environment_filters,
    environment_mask,
    environments_of,
    rows_by_environment,
    shared_environments,
)
from vlamix.mixtures.spec import Component, Filter, MixtureSpec, read_mixture
from vlamix.shards.manifest import read_manifest
from vlamix.shards.store import Store, is_url

__all__ = ["HELD_OUT", "Entry", "Resolved", "resolve", "split_view"]

HELD_OUT = "val"  # the split the trainer measures held-out loss on and never trains on

INDEX_COLUMNS = [
    "key",
    "shard",
    "offset",
    "length",
    "episode",
    "kind",
    "split",
    "success",
    "duration",
    "input_tokens",
    "crc32",  # absent from layouts indexed before it: filled with nulls (sizes are still checked)
    "environment",  # absent from layouts ingested before environments: nulls
]
_NULLABLE = {"crc32": pa.int64(), "environment": pa.string()}


@dataclass
class Entry:
    """One dataset as the mixture reads it."""

    dataset: str
    kind: str
    layout: str  # the layout's URL or folder
    filter: Filter | None
    weight: float
    share: float = 0.0
    rows: pa.Table | None = None  # the index rows that pass the filter, sorted by key

    @property
    def samples(self) -> int:
        return 0 if self.rows is None else self.rows.num_rows

    @property
    def label(self) -> str:
        if self.filter is None:
            return self.dataset
        parts = [f"{k}={v}" for k, v in vars(self.filter).items() if v is not None]
        return f"{self.dataset} [{', '.join(parts)}]"


@dataclass
class Resolved:
    spec: MixtureSpec
    entries: list[Entry]
    manifests: dict[str, dict]  # layout -> manifest
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    choices: list[Choice] = field(default_factory=list)  # what each `environments: {count, seed}` chose


def _layout_url(text: str, base: Path) -> str:
    if is_url(text):
        return text
    path = Path(text)
    return str(path if path.is_absolute() else (base / path).resolve())


def _filtered(table: pa.Table, f: Filter | None) -> pa.Table:
    if f is None:
        return table
    mask = np.ones(table.num_rows, bool)
    if f.split is not None:
        mask &= np.asarray(table.column("split").to_pylist()) == f.split
    if f.success is not None:
        mask &= np.asarray([s is f.success for s in table.column("success").to_pylist()])
    if f.max_seconds is not None:
        dur = np.asarray([np.inf if d is None else d for d in table.column("duration").to_pylist()])
        mask &= dur < f.max_seconds
    if f.kinds is not None:
        mask &= np.isin(np.asarray(table.column("kind").to_pylist()), f.kinds)
    return table.filter(pa.array(mask & environment_mask(table, f)))


class _Catalogue:
    """Every dataset of the mixture's layouts (first layout wins on a name clash, reported)."""

    def __init__(self, layouts: list[str], problems: list[str]):
        self.manifests: dict[str, dict] = {}
        self.where: dict[str, str] = {}
        self._index: dict[str, pa.Table] = {}
        self.unchecked: list[str] = []  # datasets whose index has no crc32 (older layouts)
        for given in layouts:
            url = Store(given).url  # the layout's folder or root URL (a manifest path names its folder)
            try:
                m = read_manifest(Store(url))
            except (OSError, ValueError) as e:
                problems.append(f"layout {url}: {e}")
                continue
            self.manifests[url] = m
            for name in m["datasets"]:
                if name in self.where:
                    problems.append(f"dataset {name!r} is in two layouts ({self.where[name]}, {url})")
                    continue
                self.where[name] = url

    def entry(self, name: str) -> dict:
        return self.manifests[self.where[name]]["datasets"][name]

    def environments(self) -> set[str]:
        """Every environment of every dataset of the layouts (from the manifests)."""
        return {env for name in self.where for env in environments_of(self.entry(name))}

    def reached(self, comp: Component) -> list[str]:
        """The datasets a dataset or kind component names (those the layouts have)."""
        if comp.dataset is not None:
            return [comp.dataset] if comp.dataset in self.where else []
        return sorted(n for n in self.where if self.entry(n)["kind"] == comp.kind)

    def index(self, name: str) -> pa.Table:
        if name not in self._index:
            ref = self.entry(name).get("index")
            if ref is None:
                self._index[name] = pa.table({c: [] for c in INDEX_COLUMNS})
            else:
                store = Store(self.where[name])
                index = pq.ParquetFile(pa.BufferReader(store.read_bytes(ref["path"])))
                have = index.schema_arrow.names
                table = index.read(columns=[c for c in INDEX_COLUMNS if c in have])
                if "crc32" not in have:
                    self.unchecked.append(name)
                for column, tp in _NULLABLE.items():
                    if column not in have:
                        table = table.append_column(column, pa.nulls(table.num_rows, tp))
                self._index[name] = table.sort_by("key")
        return self._index[name]


def _expand(spec: MixtureSpec, cat: _Catalogue, scale: float, stack: list[str], res: Resolved) -> list[Entry]:
    from difflib import get_close_matches

    base = Path(spec.path).parent
    out: list[Entry] = []
    filters = environment_filters(spec, cat, res.problems, res.choices)
    for i, comp in enumerate(spec.components):
        if comp is None:  # a component of a partial spec (see read_mixture): its problems are listed
            continue
        where = component_where(spec, i, comp)
        w = comp.weight * scale
        if comp.mixture is not None:
            child_path = str((base / comp.mixture).resolve())
            if child_path in stack:
                res.problems.append(f"{where}: nesting cycle {' -> '.join([*stack, child_path])}")
                continue
            try:
                child, child_problems = read_mixture(child_path)
            except ConfigError as e:
                res.problems.append(f"{where}: {e}")
                continue
            res.problems += [f"{where}: {p}" for p in child_problems]  # its valid components still count
            inner = _expand(child, cat, 1.0, [*stack, child_path], res)
            total = sum(e.weight for e in inner)
            out += [
                Entry(e.dataset, e.kind, e.layout, e.filter, w * e.weight / total) for e in inner if total > 0
            ]
            continue
        if comp.dataset is not None:
            if comp.dataset not in cat.where:
                close = get_close_matches(comp.dataset, list(cat.where), n=1)
                hint = (
                    f" (did you mean {close[0]!r}?)" if close else f" (the layouts have {sorted(cat.where)})"
                )
                res.problems.append(f"{where}: unknown dataset {comp.dataset!r}{hint}")
                continue
            names = [comp.dataset]
        else:
            names = sorted(n for n in cat.where if cat.entry(n)["kind"] == comp.kind)
            if not names:
                res.problems.append(f"{where}: no dataset of kind {comp.kind} in the layouts")
                continue
        if i in filters and filters[i] is None:  # its environments could not be chosen (a problem)
            continue
        f = filters.get(i, comp.filter)
        sizes = [_filtered(cat.index(n), f).num_rows for n in names]
        if by_environment(f) and any(sizes):  # datasets recorded elsewhere drop out of the component
            for n in (n for n, s in zip(names, sizes, strict=True) if s == 0):
                res.warnings.append(
                    f"{where}: dataset {n!r} has no sample in the environments chosen; left out"
                )
            names, sizes = [n for n, s in zip(names, sizes, strict=True) if s], [s for s in sizes if s]
        if comp.balance == "size" and sum(sizes) > 0:
            parts = [w * s / sum(sizes) for s in sizes]
        else:
            parts = [w / len(names)] * len(names)
        for n, part, size in zip(names, parts, sizes, strict=True):
            if size == 0:
                res.problems.append(f"{where}: dataset {n!r} has no sample left after the filter")
                continue
            out.append(Entry(n, cat.entry(n)["kind"], cat.where[n], f, part))
    return out


def resolve(path: str | Path, strict: bool = True, heldout: bool = True) -> Resolved:
    """Resolve a mixture file; problems are collected (all of them), not raised, except an unreadable
    top-level file and, when `strict`, the file's schema problems (all in one ConfigError). With
    `strict=False` (`vlamix mixture validate`) schema problems are listed in `problems` too, and the
    file's valid components are still resolved, so one run names every problem. With `heldout`, a
    `heldout_of:` mixture is resolved too and every environment both draw from is a problem."""
    spec, schema_problems = read_mixture(path)
    if schema_problems and strict:
        raise ConfigError("; ".join(schema_problems))
    res = Resolved(spec, [], {}, problems=list(schema_problems))
    base = Path(spec.path).parent
    if not spec.layouts:
        res.problems.append(f"{spec.path}: a top-level mixture needs `layouts:` (manifest paths or URLs)")
        return res
    cat = _Catalogue([_layout_url(u, base) for u in spec.layouts], res.problems)
    res.manifests = cat.manifests
    merged: dict[tuple, Entry] = {}
    for e in _expand(spec, cat, 1.0, [spec.path], res):
        key = (e.layout, e.dataset, json.dumps(vars(e.filter) if e.filter else None, sort_keys=True))
        if key in merged:
            merged[key].weight += e.weight  # one dataset reached by two paths: read once, weights summed
        else:
            merged[key] = e
    total = sum(e.weight for e in merged.values())
    for e in merged.values():
        e.share = e.weight / total
        e.rows = _filtered(cat.index(e.dataset), e.filter)
    res.entries = sorted(merged.values(), key=lambda e: (-e.share, e.dataset, e.label))
    _checks(res)
    if heldout and spec.heldout_of:
        _check_heldout(res, base / spec.heldout_of)
    unchecked = sorted({e.dataset for e in res.entries} & set(cat.unchecked))
    if unchecked:
        res.warnings.append(
            f"no crc32 in the index of {', '.join(unchecked)} (an older layout): shard sizes are checked, "
            "sample bytes are not"
        )
    return res


def _check_heldout(res: Resolved, other_path: Path) -> None:
    """`heldout_of: OTHER.yaml`: the two mixtures draw from no common environment (one problem per
    shared room); robot data without an environment cannot be checked (a warning names it)."""
    given = res.spec.heldout_of
    try:
        other = resolve(other_path, strict=False, heldout=False)
    except ConfigError as e:
        res.problems.append(f"{res.spec.path}: heldout_of {given}: {e}")
        return
    if other.problems:
        res.warnings.append(
            f"heldout_of {given} has problems of its own: run `vlamix mixture validate` on it"
        )
    sides = [
        rows_by_environment((e.dataset, e.rows) for e in r.entries if e.rows is not None)
        for r in (res, other)
    ]
    res.problems += shared_environments(sides[0], sides[1], res.spec.path, str(given))
    unplaced = sorted(
        {
            e.dataset
            for r in (res, other)
            for e in r.entries
            if e.kind != "WD" and e.rows is not None and None in set(e.rows.column("environment").to_pylist())
        }
    )
    if unplaced:
        res.warnings.append(
            f"heldout_of {given}: {', '.join(unplaced)} draw rows without an environment; the check cannot "
            "place them (give their sources an `environment:` and ingest again)"
        )


def _shard_problem(store: Store, name: str, shard: dict) -> str | None:
    size = store.size(shard["path"])
    if size is None:
        return f"{name}: shard {shard['path']} is missing from {store.url}"
    if size != shard["bytes"]:
        return (
            f"{name}: shard {store.url_of(shard['path'])} is {size} bytes, its manifest says {shard['bytes']}: "
            "the layout changed after it was published; re-publish it"
        )
    return None


def _shard_problems(res: Resolved, threads: int = 8) -> list[str]:
    """Every shard of the used datasets is there at its manifest's size (one stat, or one HEAD request
    over HTTP, per shard, several at a time): a shard removed, truncated or replaced after publishing is
    a problem before anything reads it."""
    jobs = [
        (Store(url), name, s)
        for url, m in res.manifests.items()
        for name in sorted({e.dataset for e in res.entries if e.layout == url})
        for s in m["datasets"][name]["shards"]
    ]
    with ThreadPoolExecutor(max(1, min(threads, len(jobs)))) as pool:
        return [p for p in pool.map(lambda job: _shard_problem(*job), jobs) if p]


def _checks(res: Resolved) -> None:
    hashes = {m["tokenizer_set"]["sha256"] for m in res.manifests.values()}
    if len(hashes) > 1:
        res.problems.append(
            f"the layouts use {len(hashes)} different tokenizer sets: ingest them with one `--tokenizers DIR`"
        )
    versions = {json.dumps(m["schema_versions"], sort_keys=True) for m in res.manifests.values()}
    if len(versions) > 1:
        res.problems.append(f"the layouts have different schema versions: {sorted(versions)}")
    res.problems += _shard_problems(res)
    kinds = {e.kind for e in res.entries}
    if res.spec.stage == "posttrain" and "CE" in kinds:
        res.warnings.append("CE data in post-training: pi0.5 post-trains on MM, ME, WD, HL and VI only")
    if res.spec.stage == "pretrain" and "VI" in kinds:
        res.warnings.append("VI data in pre-training: pi0.5 adds verbal instructions in post-training")


def split_view(res: Resolved, held_out: bool) -> Resolved:
    """The mixture over its held-out rows (split == "val") or over every other row: the trainer trains
    on the second and measures held-out loss on the first. Entries left without rows drop out (named in
    `warnings`); the others keep their relative weights."""
    entries, dropped = [], []
    for e in res.entries:
        split = np.asarray(e.rows.column("split").to_pylist(), dtype=object) == HELD_OUT
        rows = e.rows.filter(pa.array(split if held_out else ~split))
        if rows.num_rows:
            entries.append(replace(e, rows=rows))
        else:
            dropped.append(e.label)
    total = sum(e.weight for e in entries)
    for e in entries:
        e.share = e.weight / total
    which = f"{HELD_OUT} split" if held_out else f"rows outside the {HELD_OUT} split"
    warnings = [f"no {which} in: {', '.join(dropped)}"] if dropped else []
    return Resolved(
        res.spec, entries, res.manifests, list(res.problems), [*res.warnings, *warnings], list(res.choices)
    )
