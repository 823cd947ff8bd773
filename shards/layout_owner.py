"""Which files belong to a layout, and which sources file made it.

An ingest into a folder that already held another layout (made from another sources file) used to
leave the old datasets' shards, index, stats and tokenizer set beside the new manifest: a glob over
`shards/` mixed them in and `publish` uploaded them. So:

- `check_layout_owner` runs at the start of every ingest. The layout records the sources file that
  makes it in `work/owner.json` (its resolved path, its dataset names, the sha256 of its text, for the
  record). A folder holding datasets this sources file does not define (a layout of other sources) is
  refused with one line that says to pass `--fresh` (which clears the layout first) or to choose
  another `--out`. The path is not compared: the same sources file from another checkout or machine
  resumes the layout. Re-running the same sources file (resume after a kill, or after editing it) is fine,
  and so is adding datasets to it: nothing of the old layout is left unnamed then.
- `unnamed_files` lists the files of the layout's folders (shards/, index/, stats/, tokenizers/,
  embodiments/, quarantine/) that its manifest does not name; a user's own files beside them (`.git`,
  notes) are never touched: `vlamix inspect --lint` reports each, `vlamix publish` skips
  and reports each, and `remove_unnamed_files` deletes them after an ingest wrote its manifest (a
  tokenizer set refitted on changed data leaves its old folder otherwise).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from vlamix.shards.card import CARD
from vlamix.shards.layout import (
    EMBODIMENT_PATH,
    MANIFEST,
    QUARANTINE_PATH,
    REPORTS_DIR,
    TOKENIZERS_DIR,
    WORK_DIR,
)
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir

__all__ = [
    "LAYOUT_ENTRIES",
    "OWNER",
    "LayoutOwnerError",
    "check_layout_owner",
    "clear_layout",
    "layout_files",
    "named_files",
    "owner_problem",
    "remove_unnamed_files",
    "unnamed_files",
]

OWNER = WorkDir.OWNER
# Everything an ingest writes at the top of its layout: `clear_layout` removes these and nothing else,
# so a user's own files in the folder stay.
LAYOUT_ENTRIES = (
    MANIFEST,
    CARD,
    "shards",
    "index",
    "stats",
    TOKENIZERS_DIR,
    "embodiments",
    "quarantine",
    REPORTS_DIR,
    WORK_DIR,
)
_NOT_CHECKED = (WORK_DIR, REPORTS_DIR)  # top-level folders the manifest never names
# the folders whose every file the manifest names (the manifest and the card are the top-level files)
_CHECKED = tuple(e for e in LAYOUT_ENTRIES if e not in (*_NOT_CHECKED, MANIFEST, CARD))


class LayoutOwnerError(ValueError):
    """The layout folder holds a layout made from another sources file."""


def _owner_record(sources_path: Path, datasets: Iterable[str]) -> dict:
    path = Path(sources_path).resolve()
    return {
        "sources": str(path),
        "datasets": sorted(set(datasets)),
        "sources_sha256": hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None,
    }


def _children(store: Store, rel: str) -> list[str]:
    """The names of the entries directly under folder `rel` ([] when it is missing)."""
    local = store.local()
    if local is not None:
        folder = local / rel
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    try:
        store.fs.invalidate_cache()
        listing = store.fs.ls(store.path(rel), detail=False)
    except (FileNotFoundError, NotImplementedError):
        return []
    return sorted({p.rstrip("/").rsplit("/", 1)[-1] for p in listing})


def _previous_datasets(store: Store) -> tuple[str | None, set[str]] | None:
    """(the sources file, the dataset names) of the layout already in the folder; the file is None for
    a layout without an owner record (published copies, layouts from before the record). None when the
    folder holds no layout."""
    if store.exists(OWNER):
        rec = store.read_json(OWNER)
        return rec.get("sources"), set(rec.get("datasets", []))
    if store.exists(MANIFEST):
        return None, set(store.read_json(MANIFEST).get("datasets", {}))
    names = {n for part in WorkDir.DATASET_FOLDERS for n in _children(store, part)}
    names = {n.removesuffix(".json") for n in names if not n.startswith(".")}
    return (None, names) if names else None


def owner_problem(store: Store, sources_path: str | Path, datasets: Iterable[str]) -> str | None:
    """Why the ingest of `sources_path` (defining `datasets`) must not write into `store`, or None."""
    previous = _previous_datasets(store)
    if previous is None:
        return None
    # By the datasets, not the sources file's path: the same sources file from another checkout or
    # machine (a cluster driver, a CI workspace) resumes the same layout
    _, old = previous
    mine = _owner_record(Path(sources_path), datasets)
    stale = sorted(old - set(mine["datasets"]))
    if not stale:
        return None
    why = f"holds datasets {', '.join(stale[:5])}{' ...' if len(stale) > 5 else ''} that {mine['sources']} does not define"
    return (
        f"{store.url} {why}: its shards, index, stats and tokenizers would stay beside the new ones; "
        "pass --fresh to clear that layout first (everything in it goes) or choose another --out"
    )


def clear_layout(store: Store) -> list[str]:
    """Remove every entry an ingest writes (LAYOUT_ENTRIES, `work/` included) from the layout; other
    files in the folder stay. Returns what was there."""
    there = set(_children(store, ""))
    removed = [e for e in LAYOUT_ENTRIES if e in there]
    for entry in removed:
        if entry in (MANIFEST, CARD):
            store.rm(entry)
        else:
            store.rmtree(entry)
    return removed


def check_layout_owner(
    store: Store, sources_path: str | Path, datasets: Iterable[str], fresh: bool
) -> list[str]:
    """Claim `store` for the ingest of `sources_path`, whose datasets (robot, annotation and web) are
    `datasets`, before anything is written. With `fresh` the layout is cleared first (`clear_layout`);
    otherwise a layout holding datasets this file does not define (one of other sources),
    raises LayoutOwnerError (one line naming both and the way out). Then `work/owner.json` records the
    claim. Returns what `fresh` removed."""
    datasets = list(datasets)
    removed: list[str] = []
    if fresh:
        removed = clear_layout(store)
    else:
        problem = owner_problem(store, sources_path, datasets)
        if problem:
            raise LayoutOwnerError(problem)
    store.write_json(OWNER, _owner_record(Path(sources_path), datasets))
    return removed


def named_files(manifest: dict) -> tuple[set[str], set[str]]:
    """(the files, the folders) a manifest names: per dataset its shards, index, stats, embodiment spec
    and quarantine file (a failed dataset's too); the tokenizer set's folder as a whole."""
    files: set[str] = set()
    for name, d in manifest.get("datasets", {}).items():
        files.update(s["path"] for s in d.get("shards", []))
        files.update(d[part]["path"] for part in ("stats", "index") if d.get(part))
        files.add(d.get("quarantine") or QUARANTINE_PATH.format(dataset=name))
        spec = d.get("embodiment_spec") or (
            d.get("embodiment") and EMBODIMENT_PATH.format(name=d["embodiment"])
        )
        if spec:
            files.add(spec)
    for name, d in manifest.get("failed", {}).items():  # a dataset that failed keeps its reason's file
        files.add(d.get("quarantine") or QUARANTINE_PATH.format(dataset=name))
    folders = {manifest["tokenizer_set"]["path"].strip("/")} if manifest.get("tokenizer_set") else set()
    return files, folders


def layout_files(store: Store) -> list[str] | None:
    """Every file of the layout outside `work/` and `reports/`, layout-relative and sorted; None where
    the store cannot list folders (plain HTTP)."""
    local = store.local()
    if local is not None:
        if not local.is_dir():
            return []
        found = []
        for entry in local.iterdir():
            if entry.name not in _CHECKED:  # the user's own files and folders (.git, notes) are not ours
                continue
            if entry.is_dir():
                found += [p.relative_to(local).as_posix() for p in entry.rglob("*") if p.is_file()]
        return sorted(found)
    if store.url.startswith(("http://", "https://")):
        return None
    store.fs.invalidate_cache()
    root = store.root.rstrip("/")
    found = []
    for info in store.fs.ls(root, detail=True):
        name = info["name"].rstrip("/")
        rel = name[len(root) + 1 :] if name.startswith(root + "/") else name.rsplit("/", 1)[-1]
        if rel not in _CHECKED:
            continue
        if info.get("type") == "directory":
            found += [p[len(root) + 1 :] for p in store.fs.find(name) if p.startswith(root + "/")]
    return sorted(found)


def unnamed_files(store: Store, manifest: dict) -> list[str] | None:
    """The files of the layout its manifest does not name (see `named_files`), outside `work/`,
    `reports/`, the card and the manifest itself: left by another ingest, or by a killed one. None where
    the store cannot list (plain HTTP)."""
    files = layout_files(store)
    if files is None:
        return None
    named, folders = named_files(manifest)
    return [
        rel
        for rel in files
        if rel not in named
        and rel not in (MANIFEST, CARD)
        and not any(rel.startswith(f + "/") for f in folders)
    ]


def remove_unnamed_files(store: Store, manifest: dict) -> list[str]:
    """Delete `unnamed_files` (after an ingest wrote `manifest`); what was removed."""
    stray = unnamed_files(store, manifest) or []
    for rel in stray:
        store.rm(rel)
    local = store.local()
    if local is not None:  # folders the removal emptied (an old dataset's shard folder)
        for entry in LAYOUT_ENTRIES:
            top = local / entry
            if entry not in _NOT_CHECKED and top.is_dir():
                for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    if not any(d.iterdir()):
                        d.rmdir()
    return stray
