"""The layout's promise: one `vlamix` namespace over the user's folders, and Hugging Face's `tokenizers`
never shadowed by ours."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO


def _run(code: str, cwd: Path) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_tokenizers_from_repo_root_is_hugging_faces():
    # `python -c` puts the working directory first on sys.path: a top-level tokenizers/__init__.py would win.
    where = _run(
        "import tokenizers; print(tokenizers.__file__); print(tokenizers.Tokenizer.__module__)", REPO
    )
    path, module = where.splitlines()
    assert "site-packages" in path and not Path(path).is_relative_to(REPO / "tokenizers"), path
    assert module.startswith("tokenizers"), module


def test_vlamix_tokenizers_imports_from_repo_root_and_elsewhere(tmp_path):
    for cwd in (REPO, tmp_path):
        where = _run("import vlamix.tokenizers.vocab as v; print(v.__file__)", cwd)
        assert Path(where) == REPO / "tokenizers" / "vocab.py"


def test_under_pytest_tokenizers_is_still_hugging_faces():
    import tokenizers

    assert hasattr(tokenizers, "models") and hasattr(tokenizers, "Tokenizer")
    assert not Path(tokenizers.__file__).is_relative_to(REPO / "tokenizers")


def test_no_init_files_that_would_shadow():
    for folder in ("tokenizers", "tests/tokenizers", "vlamix"):
        assert not (REPO / folder / "__init__.py").exists(), (
            f"{folder}/__init__.py would shadow or break the namespace"
        )


def test_every_layout_folder_is_a_vlamix_package():
    import importlib

    for name in ("schemas", "sources", "transforms", "tokenizers", "shards", "pipelines"):
        module = importlib.import_module(f"vlamix.{name}")
        assert any(Path(p) == REPO / name for p in module.__path__), (name, list(module.__path__))
