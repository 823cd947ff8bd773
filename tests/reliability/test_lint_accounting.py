"""`vlamix inspect --lint` proves, per dataset and from the published files alone, that episodes/items and
frames read = written + quarantined + deduplicated; and it refuses shards whose bytes or member names
cannot be trusted (a sha256 the manifest does not hold, a member named `../../x`, a link)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from vlamix.cli import main
from vlamix.shards.inspect import lint_layout
from vlamix.shards.store import Store
from vlamix.shards.writer import file_sha256, write_shard

KEEP = ("widowx_sim", "web_parquet")  # an episode dataset and an item dataset: a small copy


@pytest.fixture
def layout(bundled, tmp_path) -> Path:
    """A copy of two datasets of the bundled layout, with their manifest entries only."""
    out = tmp_path / "layout"
    manifest = json.loads((bundled / "manifest.json").read_text())
    manifest["datasets"] = {k: v for k, v in manifest["datasets"].items() if k in KEEP}
    rels = [manifest["tokenizer_set"]["path"]]
    for d in manifest["datasets"].values():
        rels += [s["path"] for s in d["shards"]] + [d["quarantine"], d["index"]["path"]]
        rels += [d["stats"]["path"]] if d.get("stats") else []
    for rel in rels:
        src, dst = bundled / rel, out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert lint_layout(Store(out)) == []
    return out


def _edit(layout: Path, change) -> dict:
    manifest = json.loads((layout / "manifest.json").read_text())
    change(manifest["datasets"])
    (layout / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def _lint(layout: Path) -> str:
    return "\n".join(lint_layout(Store(layout)))


def test_accounting_that_does_not_add_up_is_named(layout):
    def more_read(ds):
        ds["widowx_sim"]["accounting"]["read"] += 1
        ds["widowx_sim"]["accounting"]["frames_read"] += 5

    _edit(layout, more_read)
    problems = _lint(layout)
    assert "widowx_sim: episodes read 7 != written 6 + quarantined 0 + duplicates 0" in problems
    assert "widowx_sim: frames read 239 != written 234 + quarantined 0" in problems


def test_quarantine_file_must_hold_a_reasoned_line_per_unit(layout):
    _edit(layout, lambda ds: ds["web_parquet"]["accounting"].update(read=4, quarantined=1))
    assert "quarantine/web_parquet.jsonl holds 0 records, the accounting 1 quarantined" in _lint(layout)
    q = layout / "quarantine" / "web_parquet.jsonl"
    q.write_text(json.dumps({"source_file": "x.parquet", "item": 3}) + "\n")
    assert "line 1 names no source_file or reason" in _lint(layout)
    q.write_text(
        json.dumps({"source_file": "x.parquet", "item": 3, "reason": "image does not decode"}) + "\n"
    )
    assert _lint(layout) == ""


def test_samples_and_index_must_match_the_frames_and_episodes_written(layout):
    _edit(layout, lambda ds: ds["widowx_sim"]["accounting"].update(written=5, duplicates=1))
    assert "the index holds 6 episodes, the accounting 5 written" in _lint(layout)
    _edit(layout, lambda ds: ds["widowx_sim"]["accounting"].update(frames_written=233, frames_duplicates=1))
    assert "the shards hold 234 samples, the accounting 233 frames written" in _lint(layout)


def test_a_shard_the_manifest_does_not_describe_is_refused(layout, capsys):
    shard = (
        layout
        / json.loads((layout / "manifest.json").read_text())["datasets"]["widowx_sim"]["shards"][0]["path"]
    )
    data = bytearray(shard.read_bytes())
    data[2000] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(SystemExit) as done:
        main(["inspect", str(layout), "--lint"])
    out = capsys.readouterr().out
    assert done.value.code == 1
    assert f"widowx_sim: shard {shard.relative_to(layout)} differs from the manifest (bytes or sha256)" in out


@pytest.mark.parametrize("kind", ["../../x", "/etc/x.jpg", "symlink"])
def test_a_tar_member_that_escapes_or_links_is_refused(layout, kind):
    """A shard crafted with such a member (its sha256 put in the manifest, so only the name is wrong)."""
    rel = json.loads((layout / "manifest.json").read_text())["datasets"]["web_parquet"]["shards"][0]["path"]
    shard = layout / rel
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar, tarfile.open(shard) as good:
        for m in good.getmembers():
            tar.addfile(m, good.extractfile(m))
        info = tarfile.TarInfo(kind if kind != "symlink" else "web_parquet/000009.jpg")
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
    shard.write_bytes(buf.getvalue())
    _edit(
        layout,
        lambda ds: ds["web_parquet"]["shards"][0].update(
            bytes=len(buf.getvalue()), sha256=file_sha256(shard)
        ),
    )
    problems = _lint(layout)
    why = {
        "../../x": "an empty, `.` or `..` path part",
        "/etc/x.jpg": "an absolute name",
        "symlink": "not a regular file",
    }[kind]
    expect = f"member {kind if kind != 'symlink' else 'web_parquet/000009.jpg'!r} refused ({why}"
    assert f"web_parquet: shard {rel}: " in problems and expect in problems, problems


def test_the_writer_refuses_member_names_that_escape(tmp_path):
    store = Store(tmp_path)
    for key, ext in [("../../x", "jpg"), ("a", "../x"), ("/abs/a", "jpg"), ("a\\b", "jpg")]:
        with pytest.raises(ValueError, match=r"refused \((an absolute|a backslash|an empty|not `<key>)"):
            write_shard(store, "shards/a.tar", [{"__key__": key, ext: b"x"}])
    assert not list(tmp_path.rglob("*")) or all(p.is_dir() for p in tmp_path.rglob("*"))
