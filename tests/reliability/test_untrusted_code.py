"""Data is untrusted, so no code path may run it: an audit of the package's source (yaml.safe_load only, no
pickle or eval of data, torch.load with weights_only=True, no shell built from data, no tar extraction to
disk), and a checkpoint whose pickle asks for code is refused with one line."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest
import torch
from conftest import REPO

from vlamix.trainer.checkpoint import MODEL, load_weights

PACKAGE_DIRS = (
    "vlamix",
    "schemas",
    "sources",
    "transforms",
    "tokenizers",
    "shards",
    "pipelines",
    "mixtures",
    "trainer",
)
# Where pickle is allowed: Ray ships the pipeline's own task objects between its workers (never data read
# from a file), exactly as Beam does internally.
PICKLE_ALLOWED = {"pipelines/ray_jobs.py"}


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _kw(node: ast.Call, name: str):
    for k in node.keywords:
        if k.arg == name:
            return ast.unparse(k.value)
    return None


def _problems(path: Path, rel: str) -> list[str]:
    found = []
    for node, func in _calls(path):
        where = f"{rel}:{node.lineno}: {func}"
        if func in (
            "yaml.load",
            "yaml.unsafe_load",
            "yaml.full_load",
            "yaml.load_all",
            "yaml.unsafe_load_all",
        ):
            found.append(f"{where}: use yaml.safe_load")
        if (
            func.startswith("pickle.")
            and func.split(".")[-1] in ("load", "loads")
            and rel not in PICKLE_ALLOWED
        ):
            found.append(f"{where}: no pickle from data")
        if func in ("eval", "exec", "os.system", "os.popen", "marshal.loads", "dill.loads"):
            found.append(f"{where}: never run text")
        if func == "torch.load" and _kw(node, "weights_only") != "True":
            found.append(f"{where}: torch.load needs weights_only=True")
        if func.startswith("subprocess.") and _kw(node, "shell") not in (None, "False"):
            found.append(f"{where}: no shell command")
        if func.endswith(("np.load", "numpy.load")) and _kw(node, "allow_pickle") not in (None, "False"):
            found.append(f"{where}: np.load without pickles")
        if func.endswith((".extractall", ".extract")) and "tar" in func.lower():
            found.append(f"{where}: shards are read in memory, never extracted to disk")
    return found


def test_the_package_never_runs_what_it_reads():
    files = [p for d in PACKAGE_DIRS for p in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 50
    problems = [x for p in files for x in _problems(p, p.relative_to(REPO).as_posix())]
    assert problems == []


def test_the_audit_catches_what_it_looks_for(tmp_path):
    """The audit itself can fail: each forbidden call in a scratch file is found."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import yaml, pickle, torch, subprocess, numpy as np, tarfile\n"
        "yaml.load(open('a'))\npickle.loads(b'')\ntorch.load('m.pt')\n"
        "subprocess.run('ls ' + name, shell=True)\nnp.load('a.npy', allow_pickle=True)\n"
        "eval(text)\ntarfile.open('a.tar').extractall('/tmp')\n"
    )
    found = _problems(bad, "bad.py")
    assert len(found) == 7, found


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_checkpoint_that_carries_code_is_refused(tmp_path, capsys):
    folder = tmp_path / "step_000001"
    folder.mkdir()
    torch.save(
        {"w": torch.zeros(2), "evil": _Payload()}, folder / MODEL, pickle_protocol=pickle.HIGHEST_PROTOCOL
    )
    with pytest.raises(ValueError, match=r"model.pt: refused: not a plain tensor file") as info:
        load_weights(folder)
    assert "this must never run" not in capsys.readouterr().out
    assert "\n" not in str(info.value)
    torch.save({"w": torch.ones(2)}, folder / MODEL)
    assert load_weights(folder)["w"].tolist() == [1.0, 1.0]
