"""The import graph between vlamix's packages: no cycles, and no import from a higher layer.

Every import counts: module level or inside a function, `import x` or `from x import y`, relative ones,
and those under `if TYPE_CHECKING:` (a cycle a type checker needs is a cycle of the design). A node is
`vlamix.<first component>`: a package (`vlamix.schemas`), or a module directly in `vlamix/`
(`vlamix.config`, `vlamix.cli`, ...). The packages and their folders are read from pyproject.toml's
`[tool.setuptools.package-dir]`, so a new package is checked the day it is added."""

from __future__ import annotations

import ast
import itertools
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first (README.md, "Layout"; docs in shared/STYLE.md). A node may import from its own layer and the
# ones below it, never from one above. Nodes on one line share a layer.
LAYERS: list[tuple[str, ...]] = [
    ("vlamix.config", "vlamix.stage_clock"),
    ("vlamix.schemas",),
    ("vlamix.sources",),
    ("vlamix.transforms",),
    ("vlamix.tokenizers",),
    ("vlamix.shards",),
    ("vlamix.pipelines",),
    ("vlamix.mixtures",),
    ("vlamix.trainer",),
    ("vlamix.exports", "vlamix.viewer"),
    (
        "vlamix.cli",
        "vlamix.cli_training",
        "vlamix.cli_mixture",
        "vlamix.cli_export",
        "vlamix.cli_view",
        "vlamix.cli_common",
        "vlamix.__main__",
    ),
]
RANK = {node: i for i, nodes in enumerate(LAYERS, start=1) for node in nodes}

Edges = dict[tuple[str, str], list[str]]  # (importer, imported) -> ["schemas/expectations.py:157", ...]


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """{dotted package: its folder}, from pyproject.toml (subpackages folded into their top package)."""
    mapping = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {pkg: root / folder for pkg, folder in mapping.items() if pkg.count(".") <= 1}


def modules(dirs: dict[str, Path]) -> dict[str, Path]:
    """{dotted module: file} of every module of the packages; `vlamix/` is not recursed into (its
    subfolders are other packages' folders only by name)."""
    out: dict[str, Path] = {}
    for pkg, folder in dirs.items():
        files = folder.glob("*.py") if pkg == "vlamix" else folder.rglob("*.py")
        for path in sorted(files):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((pkg, *parts))] = path
    return out


def node_of(module: str) -> str | None:
    """`vlamix.schemas.frame` -> `vlamix.schemas`; `vlamix.config` -> itself; anything else -> None."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "vlamix" and len(parts) > 1 else None


def imported(module: str, path: Path, tree: ast.AST) -> list[tuple[str, int]]:
    """(dotted name, line) of everything `module` imports, wherever in the file the import sits."""
    is_package = path.name == "__init__.py"
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package, `level - 1` packages up
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # `from vlamix import config` names a module, `from vlamix.schemas import frame` a package's
            out += [
                (f"{target}.{alias.name}" if target == "vlamix" else target, node.lineno)
                for alias in node.names
            ]
    return out


def import_edges(root: Path = ROOT) -> Edges:
    edges: Edges = defaultdict(list)
    for module, path in modules(package_dirs(root)).items():
        src = node_of(module)
        tree = ast.parse(path.read_text(), filename=str(path))
        for name, line in imported(module, path, tree):
            dst = node_of(name)
            where = f"{path.relative_to(root)}:{line}"
            if dst is not None and dst != src and where not in edges[(src, dst)]:
                edges[(src, dst)].append(where)
    return dict(edges)


def cycles(edges: Edges) -> list[list[str]]:
    """One shortest cycle through each node that lies on a cycle, without repeats (as [a, b, ..., a])."""
    succ: dict[str, list[str]] = defaultdict(list)
    for a, b in sorted(edges):
        succ[a].append(b)
    found: dict[frozenset, list[str]] = {}
    for start in sorted(succ):
        paths = {start: [start]}  # breadth first from start, back to start
        queue = [start]
        while queue:
            a = queue.pop(0)
            if start in succ[a]:
                cycle = [*paths[a], start]
                found.setdefault(frozenset(itertools.pairwise(cycle)), cycle)
                break
            for b in succ[a]:
                if b not in paths:
                    paths[b] = [*paths[a], b]
                    queue.append(b)
    return sorted(found.values(), key=lambda c: (len(c), c))


def describe_cycle(cycle: list[str], edges: Edges) -> str:
    lines = [" -> ".join(cycle)]
    for a, b in itertools.pairwise(cycle):
        lines.append(f"    {a} -> {b}: {', '.join(edges[(a, b)])}")
    return "\n".join(lines)


def layer_violations(edges: Edges) -> tuple[list[str], list[str]]:
    """(imports from a higher layer, nodes missing from LAYERS), as messages."""
    unknown = sorted({n for pair in edges for n in pair if n not in RANK})
    bad = []
    for (a, b), where in sorted(edges.items()):
        if a in RANK and b in RANK and RANK[b] > RANK[a]:
            bad.append(
                f"{a} (layer {RANK[a]}) imports {b} (layer {RANK[b]}), a higher layer, at: {', '.join(where)}"
            )
    return bad, unknown


def test_no_import_cycles_between_packages():
    edges = import_edges()
    found = cycles(edges)
    assert not found, (
        f"{len(found)} import cycle(s) between vlamix's packages (each edge with the file:line of its "
        "imports; function-level and TYPE_CHECKING imports count). Break each by moving the shared code "
        "down to the lower package, or by passing what is needed in from the caller:\n"
        + "\n".join(describe_cycle(c, edges) for c in found)
    )


def test_no_package_imports_from_a_higher_layer():
    bad, unknown = layer_violations(import_edges())
    order = " < ".join("/".join(nodes) for nodes in LAYERS)
    assert not unknown, (
        f"{unknown}: not in LAYERS of tests/test_import_graph.py; give each its place in the order {order}"
    )
    assert not bad, (
        f"{len(bad)} import(s) from a higher layer (the order, lowest first: {order}). Move the code that "
        "is needed down, or have the caller pass it in:\n" + "\n".join(bad)
    )


def test_the_graph_sees_every_kind_of_import_and_names_cycles(tmp_path):
    """The checks themselves, on a planted two-package cycle: a TYPE_CHECKING import one way, a
    function-level relative import the other, and `from vlamix import <module>` for a top-level module."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools.package-dir]\n"vlamix" = "vlamix"\n"vlamix.low" = "low"\n"vlamix.high" = "high"\n'
    )
    for folder in ("vlamix", "low", "high", "high/sub"):
        (tmp_path / folder).mkdir()
    (tmp_path / "vlamix/config.py").write_text("X = 1\n")
    (tmp_path / "low/__init__.py").write_text("")
    (tmp_path / "low/a.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from vlamix.high.sub.b import B\n"
    )
    (tmp_path / "high/__init__.py").write_text("from vlamix import config\n")
    (tmp_path / "high/sub/__init__.py").write_text("")
    (tmp_path / "high/sub/b.py").write_text("def f():\n    from ...low import a\n    return a\n")
    edges = import_edges(tmp_path)
    assert edges == {
        ("vlamix.low", "vlamix.high"): ["low/a.py:4"],
        ("vlamix.high", "vlamix.low"): ["high/sub/b.py:2"],
        ("vlamix.high", "vlamix.config"): ["high/__init__.py:1"],
    }
    (cycle,) = cycles(edges)
    assert describe_cycle(cycle, edges) == (
        "vlamix.high -> vlamix.low -> vlamix.high\n"
        "    vlamix.high -> vlamix.low: high/sub/b.py:2\n"
        "    vlamix.low -> vlamix.high: low/a.py:4"
    )


@pytest.mark.parametrize(
    "module", ["vlamix.config", "vlamix.cli", "vlamix.tokenizers.tokenizer_set", "vlamix.sources.synthetic"]
)
def test_the_graph_covers_every_module(module):
    """`vlamix/` and `tokenizers/` have no __init__.py, `sources/synthetic/` is a package of its own in
    pyproject.toml: their modules are in the graph all the same."""
    assert module in modules(package_dirs())
