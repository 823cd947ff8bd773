"""The shape of the ingest core, held by tests: `work/` paths are spelled in one module, the engines never
dispatch on a unit's type, the typed sample is the SAMPLE schema, and no pipelines/ file outgrows one idea."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from vlamix.pipelines.sample import Sample
from vlamix.schemas.sample import SAMPLE

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (
    "schemas",
    "sources",
    "transforms",
    "tokenizers",
    "shards",
    "pipelines",
    "mixtures",
    "trainer",
    "vlamix",
)
WORKDIR = REPO / "shards" / "workdir.py"


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _work_paths(path: Path) -> list[str]:
    """String literals (docstrings aside) and f-strings of `path` that spell a path inside `work/`."""
    tree = ast.parse(path.read_text())
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if node.value.startswith("work/") or "/work/" in node.value:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.JoinedStr):
            names = {
                n.id
                for v in node.values
                if isinstance(v, ast.FormattedValue)
                for n in ast.walk(v)
                if isinstance(n, ast.Name)
            }
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            if "WORK_DIR" in names and "/" in text:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: an f-string under WORK_DIR")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            parts = [n.value for n in (node.left, node.right) if isinstance(n, ast.Constant)]
            if "work" in parts:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: / 'work'")
    return found


def test_only_the_workdir_module_spells_a_work_path():
    others = [*_modules(), *(REPO / "tests").rglob("*.py"), *(REPO / "benchmarks").rglob("*.py")]
    found = [hit for path in others if path not in (WORKDIR, Path(__file__)) for hit in _work_paths(path)]
    assert not found, "spell work/ paths through shards/workdir.py WorkDir:\n" + "\n".join(found)
    assert _work_paths(WORKDIR)  # the check sees the paths where they are named


def test_the_engines_never_dispatch_on_a_units_type():
    for name in ("beam_jobs.py", "ray_jobs.py", "work_units.py"):
        tree = ast.parse((REPO / "pipelines" / name).read_text())
        calls = [
            n.lineno
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "isinstance"
        ]
        assert not calls, (
            f"pipelines/{name}: isinstance at lines {calls}: units say what they are (pipelines/units.py)"
        )


def test_no_pipelines_file_outgrows_one_idea():
    long = {
        p.name: n for p in (REPO / "pipelines").glob("*.py") if (n := len(p.read_text().splitlines())) > 350
    }
    assert not long, f"pipelines/ files over 350 lines: {long}"


def test_the_typed_sample_is_the_sample_schema():
    typed = {f.name for f in dataclasses.fields(Sample)} - {"images"}
    schema = {f.name for f in SAMPLE.fields}
    images = {f for f in schema if f.startswith("image_") and f != "image_mask"}
    assert typed | images | {"image_mask"} == schema
    assert not typed & images
