from __future__ import annotations

import subprocess
import sys

import pytest

from vlamix.schemas.frame import FRAME


@pytest.mark.parametrize(
    "argv, expect",
    [
        ([], "ingest"),
        (["ingest"], "--shard-samples"),
        (["samples"], "generate"),
        (["samples", "generate"], "--episodes"),
        (["schemas"], "doc"),
        (["schemas", "doc"], "--out"),
        (["schemas", "show"], "frame, item or sample"),
        (["train"], "--eval-every"),
        (["predict"], "--subtask"),
        (["export"], "openpi-norm-stats"),
        (["export", "lerobot"], "--video-codec"),
        (["export", "openpi-norm-stats"], "--dataset"),
        (["view"], "--html"),
    ],
)
def test_every_verb_has_help(argv, expect):
    out = subprocess.run(
        [sys.executable, "-m", "vlamix.cli", *argv, "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert expect in out.stdout


def test_bad_only_step_is_a_clear_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "vlamix.cli", "ingest", "--only", "shards", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "extract, stats, tokenizers, build, index" in out.stderr


def test_schemas_show_prints_version():
    out = subprocess.run(
        [sys.executable, "-m", "vlamix.cli", "schemas", "show", "frame"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith(f"frame v{FRAME.version}\n") and "episode_hash: string" in out.stdout
