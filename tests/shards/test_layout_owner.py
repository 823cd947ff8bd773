"""A layout belongs to one sources file: an ingest into a folder that holds another layout is refused
(or, with --fresh, clears it first); `inspect --lint` reports every file the manifest does not name;
`publish` skips and reports each. On a real layout, ingested once per module (about 10 s, so those
tests are marked slow) and copied per test."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES, ingest_cli
from servers import s3_server
from typer.testing import CliRunner

from vlamix.cli import app
from vlamix.shards.layout import WORK_DIR
from vlamix.shards.layout_owner import (
    OWNER,
    LayoutOwnerError,
    check_layout_owner,
    clear_layout,
    remove_unnamed_files,
    unnamed_files,
)
from vlamix.shards.publish import plan_files, publish
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir

WIDOWX = f"""
datasets:
  - {{name: widowx_sim, kind: CE, format: rlds, path: {SAMPLES}/widowx_sim, embodiment: widowx_bridge}}
"""
ARM6 = f"""
datasets:
  - {{name: arm6_sim, kind: CE, format: rlds, path: {SAMPLES}/arm6_sim, embodiment: {SAMPLES}/embodiments/sim_arm6.yaml,
      keys: {{state: [steps/observation/joint_positions, steps/observation/gripper_position],
              action: [steps/action/joint_targets, steps/action/gripper],
              instruction: steps/observation/natural_language_instruction}}}}
"""


def _sources(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sources.yaml"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path]:
    """(a real one-dataset layout, the sources file that made it): ingested once (about 10 s)."""
    root = tmp_path_factory.mktemp("owner")
    sources = _sources(root / "a", WIDOWX)
    ingest_cli(root / "out", workers=1, sources=sources)
    return root / "out", sources


@pytest.fixture
def layout(made, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(made[0], out)
    return out


def _stale(out: Path) -> list[str]:
    """Plant an older layout's files (real bytes, renamed) beside the manifest's own; their paths."""
    manifest = json.loads((out / "manifest.json").read_text())
    d = manifest["datasets"]["widowx_sim"]
    tok = out / manifest["tokenizer_set"]["path"]
    copies = [
        (d["shards"][0]["path"], "shards/old_sim/old_sim-000000.tar"),
        (d["index"]["path"], "index/old_sim.parquet"),
        (d["stats"]["path"], "stats/old_sim.json"),
        (d["quarantine"], "quarantine/old_sim.jsonl"),
        (d["embodiment_spec"], "embodiments/old_arm.yaml"),
        (d["shards"][0]["path"], "shards/widowx_sim/widowx_sim-000007.tar"),  # a shard of an older plan
    ]
    for src, dst in copies:
        (out / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / src, out / dst)
    shutil.copytree(tok, out / "tokenizers" / ("0" * 64))
    (out / "notes.txt").write_text("the user's own top-level file\n")  # not the layout's: never checked
    (out / ".git").mkdir(exist_ok=True)
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")  # a cloned dataset repo's own files
    (out / WORK_DIR / "anything.json").write_text("{}")  # work/ and reports/ are never checked
    (out / "reports" / "mine.html").write_text("<p>a report</p>")
    toks = sorted(
        p.relative_to(out).as_posix() for p in (out / "tokenizers" / ("0" * 64)).rglob("*") if p.is_file()
    )
    return sorted([*(dst for _, dst in copies), *toks])


# --- the guard ---------------------------------------------------------------------------------------


def test_an_empty_or_missing_folder_is_claimed(tmp_path):
    sources = _sources(tmp_path / "a", WIDOWX)
    store = Store(tmp_path / "nowhere" / "out")
    assert check_layout_owner(store, sources, ["widowx_sim"], fresh=False) == []
    rec = store.read_json(OWNER)
    assert rec["sources"] == str(sources.resolve()) and rec["datasets"] == ["widowx_sim"]
    assert len(rec["sources_sha256"]) == 64
    (tmp_path / "empty").mkdir()
    check_layout_owner(Store(tmp_path / "empty"), sources, ["widowx_sim"], fresh=False)


@pytest.mark.slow  # a real ingest, once per module
def test_the_same_sources_file_runs_again_and_may_add_datasets(layout, made):
    store = Store(layout)
    sources = made[1]
    check_layout_owner(store, sources, ["widowx_sim"], fresh=False)  # a layout from before the record
    check_layout_owner(store, sources, ["widowx_sim"], fresh=False)  # a resume: the same command again
    sources.write_text(sources.read_text() + "\n# edited\n")  # an edited file is still the same file
    check_layout_owner(store, sources, ["widowx_sim"], fresh=False)
    check_layout_owner(store, sources, ["widowx_sim", "arm6_sim"], fresh=False)  # nothing left unnamed
    assert store.read_json(OWNER)["datasets"] == ["arm6_sim", "widowx_sim"]
    with pytest.raises(LayoutOwnerError, match="holds datasets widowx_sim that"):
        check_layout_owner(store, sources, ["arm6_sim"], fresh=False)  # widowx_sim's files would stay


@pytest.mark.slow  # a real ingest, once per module
def test_a_sources_file_without_the_layouts_datasets_is_refused_in_one_line(layout, made, tmp_path):
    store = Store(layout)
    check_layout_owner(store, made[1], ["widowx_sim"], fresh=False)
    before = sorted(p.relative_to(layout).as_posix() for p in layout.rglob("*"))
    other = _sources(tmp_path / "b", ARM6)
    with pytest.raises(LayoutOwnerError) as e:  # widowx_sim's files would stay beside arm6_sim's
        check_layout_owner(store, other, ["arm6_sim"], fresh=False)
    message = str(e.value)
    assert "\n" not in message and "holds datasets widowx_sim that" in message
    assert "--fresh" in message and "another --out" in message
    assert sorted(p.relative_to(layout).as_posix() for p in layout.rglob("*")) == before  # nothing touched
    # the same datasets from a sources file elsewhere (another checkout, a cluster driver) resume it:
    # the new manifest names every dataset there is, so nothing old is left unnamed
    check_layout_owner(store, other, ["widowx_sim"], fresh=False)


@pytest.mark.slow  # a real ingest, once per module
def test_without_a_record_the_manifest_or_work_folder_tells(layout, tmp_path):
    store = Store(layout)
    other = _sources(tmp_path / "b", ARM6)
    store.rm(OWNER)
    with pytest.raises(LayoutOwnerError, match="holds datasets widowx_sim"):  # from the manifest
        check_layout_owner(store, other, ["arm6_sim"], fresh=False)
    store.rm("manifest.json")  # a run killed before its manifest: work/ names its datasets
    with pytest.raises(LayoutOwnerError, match="holds datasets widowx_sim"):
        check_layout_owner(store, other, ["arm6_sim"], fresh=False)
    check_layout_owner(store, other, ["widowx_sim", "arm6_sim"], fresh=False)  # no file recorded: names only


@pytest.mark.slow  # a real ingest, once per module
def test_fresh_clears_the_whole_layout_and_only_it(layout, tmp_path):
    (layout / "notes.txt").write_text("the user's own file\n")
    store = Store(layout)
    other = _sources(tmp_path / "b", ARM6)
    removed = check_layout_owner(store, other, ["arm6_sim"], fresh=True)
    assert set(removed) >= {"manifest.json", "README.md", "shards", "index", "stats", "tokenizers", WORK_DIR}
    left = sorted(p.relative_to(layout).as_posix() for p in layout.rglob("*") if p.is_file())
    assert left == ["notes.txt", OWNER]
    assert store.read_json(OWNER)["sources"] == str(other.resolve())
    assert clear_layout(Store(tmp_path / "absent")) == []


@pytest.mark.slow  # a real ingest, once per module
def test_ingest_of_another_sources_file_is_refused_then_fresh_rebuilds(layout, tmp_path):
    other = _sources(tmp_path / "b", ARM6)

    def ingest(*extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "vlamix.cli", "ingest", "--sources", str(other), "--out", str(layout)]
        return subprocess.run([*cmd, "--workers", "1", *extra], capture_output=True, text=True, cwd=REPO)

    done = ingest()
    assert done.returncode != 0 and "--fresh" in done.stderr and "Traceback" not in done.stderr
    assert "widowx_sim" in json.loads((layout / "manifest.json").read_text())["datasets"]  # untouched
    done = ingest("--fresh")
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(json.loads((layout / "manifest.json").read_text())["datasets"]) == {"arm6_sim"}
    assert (
        not (layout / "shards" / "widowx_sim").exists()
        and unnamed_files(Store(layout), _manifest(layout)) == []
    )


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# --- lint, publish, prune ----------------------------------------------------------------------------


def _lint(out: Path) -> tuple[int, str]:
    done = CliRunner().invoke(app, ["inspect", str(out), "--lint"])
    return done.exit_code, done.output


@pytest.mark.slow  # a real ingest, once per module
def test_lint_reports_every_file_the_manifest_does_not_name(layout):
    code, output = _lint(layout)
    assert code == 0 and "lint: ok" in output, output
    stale = _stale(layout)
    assert unnamed_files(Store(layout), _manifest(layout)) == stale
    code, output = _lint(layout)
    assert code == 1
    problems = [line for line in output.splitlines() if line.startswith("  - ")]
    assert sorted(p.removeprefix("  - ").split(": ", 1)[0] for p in problems) == stale
    assert all("the manifest does not name" in p for p in problems)


@pytest.mark.slow  # a real ingest, once per module
def test_publish_skips_and_reports_every_unnamed_file(layout, tmp_path):
    stale = _stale(layout)
    dest = tmp_path / "published"
    report = publish(layout, str(dest))
    assert report["skipped_unnamed"] == stale
    sent = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert sent == sorted(f.rel for f in plan_files(layout))
    assert not set(stale) & set(sent) and "reports/mine.html" in sent and "manifest.json" in sent
    assert not any(WorkDir.holds(rel) for rel in sent)
    assert _lint(dest)[0] == 0  # the published copy is clean


@pytest.mark.slow  # a real ingest, once per module
def test_remove_unnamed_files_leaves_a_clean_layout(layout):
    stale = _stale(layout)
    assert remove_unnamed_files(Store(layout), _manifest(layout)) == stale
    assert not (layout / "shards" / "old_sim").exists() and not (layout / "tokenizers" / ("0" * 64)).exists()
    assert (layout / WORK_DIR / "anything.json").exists() and (layout / "reports" / "mine.html").exists()
    assert (layout / "notes.txt").exists() and (layout / ".git" / "HEAD").exists()  # the user's own
    assert _lint(layout)[0] == 0


@pytest.mark.slow  # a real ingest, once per module
def test_on_an_object_store_too(layout, made, tmp_path):
    stale = _stale(layout)
    with s3_server() as endpoint:
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="owner")
        url = "s3://owner/layouts/v1"
        store = Store(url)
        for p in sorted(layout.rglob("*")):
            if p.is_file():
                store.put_file(p, p.relative_to(layout).as_posix())
        assert unnamed_files(store, store.read_json("manifest.json")) == stale
        code, output = _lint(url)  # type: ignore[arg-type]
        assert code == 1 and "shards/old_sim/old_sim-000000.tar: a file the manifest" in output
        check_layout_owner(store, made[1], ["widowx_sim"], fresh=False)
        other = _sources(tmp_path / "b", ARM6)
        with pytest.raises(LayoutOwnerError, match="--fresh"):
            check_layout_owner(store, other, ["arm6_sim"], fresh=False)
        check_layout_owner(store, other, ["arm6_sim"], fresh=True)
        root = store.root.rstrip("/") + "/"
        assert [p.removeprefix(root) for p in store.fs.find(store.root)] == [".git/HEAD", "notes.txt", OWNER]
