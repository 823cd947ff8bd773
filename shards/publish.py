"""`vlamix publish OUT --to URL`: copy a published layout (docs/design.md §5, without `work/`) to any fsspec
URL or to a Hugging Face dataset repo.

- Order: every file, then the dataset card, then `manifest.json` last: a reader that finds a manifest
  finds everything it names.
- Only what the manifest names (and `reports/`) goes: a file it does not name (an older layout's shards
  left in the folder, a killed run's temp file) is skipped, and listed in the summary
  (`skipped_unnamed`). `work/` never goes.
- Resumable: a file already at the destination with the same size and sha256 is not sent again.
- Verified: after each upload the file is read back and its sha256 compared (`verify=False` skips it
  where reading back costs too much). Local and `file://` destinations get each file atomically (temp name
  + rename); object stores make each object appear whole.
- Killed at any point (SIGKILL included), re-running the same command gives the same destination as an
  uninterrupted run: finished files are skipped, the rest sent, the killed run's temp files removed.
- `hf://datasets/<org>/<name>`: two commits through huggingface_hub's API (data, then the manifest); the
  Hub verifies LFS files by sha256 and skips uploads it already has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlamix.shards.card import CARD
from vlamix.shards.layout import MANIFEST
from vlamix.shards.layout_owner import unnamed_files
from vlamix.shards.manifest import read_manifest
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir
from vlamix.shards.writer import file_sha256

__all__ = ["PublishFile", "hf_commits", "parse_hf_url", "plan_files", "publish", "unnamed"]

log = logging.getLogger("vlamix.publish")


@dataclass(frozen=True)
class PublishFile:
    rel: str
    size: int
    sha256: str


def unnamed(out: Path) -> list[str]:
    """The layout's files that `publish` skips because the manifest does not name them (not `work/`)."""
    return unnamed_files(Store(out), read_manifest(out)) or []


def plan_files(out: Path) -> list[PublishFile]:
    """What gets published, in order: the files the manifest names and `reports/` (not `work/`, no temp
    files, nothing `unnamed`), the card, the manifest last. Shards take their sha256 from the manifest,
    after checking their size against it."""
    manifest = read_manifest(out)
    known = {s["path"]: s for d in manifest["datasets"].values() for s in d["shards"]}
    skip = set(unnamed_files(Store(out), manifest) or [])
    files = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        if (
            WorkDir.holds(rel)
            or rel in (MANIFEST, CARD)
            or rel in skip
            or any(part.startswith(".") for part in rel.split("/"))
        ):
            continue
        size = path.stat().st_size
        if rel in known and known[rel]["bytes"] != size:
            raise ValueError(
                f"{path}: {size} bytes, the manifest says {known[rel]['bytes']}: re-run `vlamix ingest`"
            )
        files.append(PublishFile(rel, size, known[rel]["sha256"] if rel in known else file_sha256(path)))
    missing = sorted(set(known) - {f.rel for f in files})
    if missing:
        raise FileNotFoundError(f"{out}: shards named by the manifest are missing: {missing[:3]}")
    for rel in (CARD, MANIFEST):
        if (out / rel).is_file():
            files.append(PublishFile(rel, (out / rel).stat().st_size, file_sha256(out / rel)))
    return files


def _remove_stale_temps(target: Path) -> None:
    """Temp files an interrupted publish (or ingest) left for `target` (`.<name>.tmp-<pid>`)."""
    if target.parent.is_dir():
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            stale.unlink(missing_ok=True)


def _put(out: Path, dest: Store, f: PublishFile) -> None:
    """Send one file: locally to a temp name, fsynced and renamed (a reader never sees half a file, a
    kill leaves only a temp file, removed when the file is sent again); to an object store one PUT or
    multipart upload, which appears whole or not at all."""
    local = dest.local()
    if local is not None:
        _remove_stale_temps(local / f.rel)
    dest.put_file(out / f.rel, f.rel)


def publish(
    out: Path, to: str, verify: bool = True, progress: Callable[[PublishFile, str], None] | None = None
) -> dict:
    """Publish `out` to `to`; returns {"sent": n, "skipped": n, "bytes_sent": n, "files": n, "url": to,
    "skipped_unnamed": [files the manifest does not name, not sent]}."""
    out = Path(out)
    files = plan_files(out)
    stray = unnamed(out)
    for rel in stray:
        log.warning("skipped %s: the manifest of %s does not name it (left by another ingest?)", rel, out)
    if to.startswith("hf://"):
        return {**_publish_hf(out, to, files), "skipped_unnamed": stray}
    dest = Store(to)
    sent = skipped = sent_bytes = 0
    for f in files:
        there = dest.size(f.rel)
        if there == f.size and (not verify or dest.sha256(f.rel) == f.sha256):
            skipped += 1
            status = "already there"
        else:
            _put(out, dest, f)
            if verify and dest.sha256(f.rel) != f.sha256:
                raise OSError(
                    f"{dest.url_of(f.rel)}: sha256 after upload differs from {out / f.rel}; publish again"
                )
            sent, sent_bytes = sent + 1, sent_bytes + f.size
            status = "sent"
        if progress:
            progress(f, status)
    return {
        "url": dest.url,
        "files": len(files),
        "sent": sent,
        "skipped": skipped,
        "bytes_sent": sent_bytes,
        "skipped_unnamed": stray,
    }


def parse_hf_url(url: str) -> tuple[str, str | None]:
    """`hf://datasets/<org>/<name>[@revision]` -> (repo id, revision)."""
    rest = url.removeprefix("hf://")
    if not rest.startswith("datasets/"):
        raise ValueError(f"{url}: publish to a dataset repo, hf://datasets/<org>/<name>")
    repo = rest.removeprefix("datasets/").strip("/")
    revision = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"{url}: expected hf://datasets/<org>/<name>")
    return repo, revision


def hf_commits(out: Path, files: list[PublishFile]) -> list[tuple[str, list]]:
    """The commits `publish` makes on the Hub: (message, operations) for the data, then the manifest."""
    from huggingface_hub import CommitOperationAdd

    data = [CommitOperationAdd(f.rel, str(out / f.rel)) for f in files if f.rel != MANIFEST]
    last = [CommitOperationAdd(MANIFEST, str(out / MANIFEST))]
    return [
        ("vlamix publish: shards, index, stats, tokenizers, card", data),
        ("vlamix publish: manifest", last),
    ]


def _publish_hf(out: Path, url: str, files: list[PublishFile]) -> dict:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    repo, revision = parse_hf_url(url)
    api = HfApi()
    try:
        api.create_repo(repo, repo_type="dataset", exist_ok=True)
        for message, ops in hf_commits(out, files):
            api.create_commit(repo, ops, commit_message=message, repo_type="dataset", revision=revision)
        remote = {
            p.path: p.lfs.sha256
            for p in api.get_paths_info(repo, [f.rel for f in files], repo_type="dataset", revision=revision)
            if getattr(p, "lfs", None)
        }
    except OfflineModeIsEnabled as e:
        raise OSError(f"{url}: cannot publish to the Hub while HF_HUB_OFFLINE=1 is set ({e})") from e
    bad = [f.rel for f in files if f.rel in remote and remote[f.rel] != f.sha256]
    if bad:
        raise OSError(f"{url}: the Hub holds other bytes for {bad[:3]}; publish again")
    return {"url": url, "files": len(files), "sent": len(files), "skipped": 0, "verified_lfs": len(remote)}
