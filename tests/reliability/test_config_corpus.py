"""The config half of the bad-input corpus: broken sources, embodiment, mixture and trainer YAMLs, run
through the real `vlamix` entry point in this process. Each is exit code 1 or 2 with ONE line on stderr
that names the file and the entry, and no traceback; `--debug` adds the traceback. Nothing is run from a
YAML tag, and alias bombs stay small."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from conftest import SAMPLES

from vlamix.cli import main

ROBOT = """\
datasets:
  - name: arm
    kind: CE
    format: rlds
    path: {samples}/arm6_sim
    embodiment: {embodiment}
    keys:
      state: [steps/observation/joint_positions, steps/observation/gripper_position]
      action: [steps/action/joint_targets, steps/action/gripper]
"""
EMBODIMENT = (SAMPLES / "embodiments" / "sim_arm6.yaml").read_text()
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def _robot(embodiment: str = str(SAMPLES / "embodiments" / "sim_arm6.yaml")) -> str:
    return ROBOT.format(samples=SAMPLES, embodiment=embodiment)


def _dims(n: int) -> str:
    dims = "".join(f"  - {{name: j{i}, kind: joint_position, unit: rad}}\n" for i in range(n))
    head = EMBODIMENT.split("state:")[0]
    return f"{head}state:\n{dims}action:\n{dims}cameras: {{agentview_image: base_0}}\n"


# name -> (files to write {relative path: text or bytes}, argv with {d} for the folder, message regex,
# the file the message must name)
SOURCES_CASES = {
    "unsafe tag": (
        {"s.yaml": "datasets:\n  - !!python/object/apply:os.system [touch {d}/pwned]\n"},
        "refused .*python/object/apply",
        "s.yaml",
    ),
    "not UTF-8": ({"s.yaml": b"datasets:\n  - name: caf\xe9\n"}, "not UTF-8 text", "s.yaml"),
    "alias bomb": ({"s.yaml": BOMB}, "expands to over", "s.yaml"),
    "recursive alias": ({"s.yaml": "datasets: &x [*x]\n"}, "contains itself", "s.yaml"),
    "unknown kind": (
        {"s.yaml": "datasets:\n  - {name: a, kind: XX, format: rlds, path: .}\n"},
        r"datasets\[0\]: kind 'XX'",
        "s.yaml",
    ),
    "unknown format": (
        {"s.yaml": _robot().replace("format: rlds", "format: rosbag")},
        r"datasets\[0\] \(arm\): unknown format 'rosbag' for a CE dataset; known: ",
        "s.yaml",
    ),
    "misspelt key": (
        {"s.yaml": _robot().replace("embodiment:", "embodyment:")},
        "unknown key 'embodyment' .did you mean 'embodiment'",
        "s.yaml",
    ),
    "twice the same name": (
        {"s.yaml": _robot() + _robot().split("datasets:\n")[1]},
        "dataset name 'arm' appears twice",
        "s.yaml",
    ),
    "annotations of no dataset": (
        {
            "s.yaml": _robot()
            + "  - {name: hl, kind: HL, format: annotations_jsonl, path: a.jsonl, dataset: armm}\n"
        },
        "points into 'armm', which is not a robot dataset.*did you mean 'arm'",
        "s.yaml",
    ),
    "path matches nothing": (
        {"s.yaml": _robot().replace(f"{SAMPLES}/arm6_sim", "nowhere")},
        "'nowhere' .* matches no",
        "s.yaml",
    ),
    "embodiment of 40 dims": (
        {"s.yaml": _robot("e.yaml"), "e.yaml": _dims(40)},
        "state has 40 dims; it needs 1..32",
        "e.yaml",
    ),
    "embodiment with a repeated dim": (
        {"s.yaml": _robot("e.yaml"), "e.yaml": _dims(3).replace("name: j2", "name: j1")},
        "dim names repeat",
        "e.yaml",
    ),
    "embodiment camera in no slot": (
        {"s.yaml": _robot("e.yaml"), "e.yaml": _dims(7).replace("base_0}", "roof}")},
        "maps to unknown slot 'roof'",
        "e.yaml",
    ),
    "unknown shipped embodiment": (
        {"s.yaml": _robot("widowx_bridgee")},
        "unknown embodiment 'widowx_bridgee'",
        "s.yaml",
    ),
}


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    """Off unless a test turns it on; `main(["--debug", ...])` sets it in this process, and setenv here
    makes the teardown take it away again."""
    monkeypatch.setenv("VLAMIX_DEBUG", "0")


def _write(folder: Path, files: dict) -> None:
    for rel, body in files.items():
        data = body if isinstance(body, bytes) else body.replace("{d}", str(folder)).encode()
        (folder / rel).write_bytes(data)


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    return done.value.code, out, err


def _one_line_error(code: int, err: str, message: str, names: str) -> None:
    lines = err.strip().splitlines()
    assert code in (1, 2) and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ") and names in lines[0], lines[0]
    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize("case", sorted(SOURCES_CASES))
def test_broken_sources_and_embodiments_stop_ingest_with_one_line(case, tmp_path, capsys):
    files, message, names = SOURCES_CASES[case]
    _write(tmp_path, files)
    code, _, err = _run(
        ["ingest", "--sources", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o")], capsys
    )
    _one_line_error(code, err, message, str(tmp_path / names))
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "o" / "manifest.json").exists()


def test_debug_adds_the_traceback(tmp_path, capsys):
    _write(tmp_path, {"s.yaml": _robot("e.yaml"), "e.yaml": _dims(40)})
    code, _, err = _run(["ingest", "--debug", "--sources", str(tmp_path / "s.yaml")], capsys)
    assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")


def test_an_unforeseen_exception_is_one_line_and_debug_raises_it(monkeypatch, capsys):
    """What no verb turned into its own message (a bug) is still one line, naming its type."""
    import vlamix.schemas as records

    monkeypatch.setattr(records, "RECORDS", None)  # `schemas show` now iterates None
    code, _, err = _run(["schemas", "show", "frame"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("error: TypeError: ") and "re-run with --debug" in err
    with pytest.raises(TypeError):
        main(["--debug", "schemas", "show", "frame"])


MIXTURE_CASES = {
    "negative weight": ("components: [{dataset: widowx_sim, weight: -1}]", "weight -1.0 must be a positive"),
    "zero weight": ("components: [{dataset: widowx_sim, weight: 0}]", "weight 0.0 must be a positive"),
    "NaN weight": ("components: [{dataset: widowx_sim, weight: .nan}]", "must be a positive, finite"),
    "infinite weight": ("components: [{dataset: widowx_sim, weight: .inf}]", "must be a positive, finite"),
    "string weight": ("components: [{dataset: widowx_sim, weight: heavy}]", "expected float, got str"),
    "unsafe tag": ("components:\n  - !!python/object/apply:os.system [echo pwned]", "refused"),
    "alias bomb": (BOMB.replace("a:", "x_a:", 1), "expands to over|unknown key"),
    "unknown dataset": ("components: [{dataset: widowx_simm}]", "did you mean 'widowx_sim'"),
    "nesting cycle": ("components: [{mixture: bad.yaml}]", "nesting cycle"),
}


@pytest.mark.parametrize("case", sorted(MIXTURE_CASES))
def test_broken_mixtures_fail_validate(case, mixdir, capsys):
    body, message = MIXTURE_CASES[case]
    f = mixdir / "bad.yaml"
    f.write_text(f"name: bad\nstage: pretrain\nlayouts: [../out/manifest.json]\n{body}\n")
    code, out, err = _run(["mixture", "validate", str(f)], capsys)
    text = (out + err).strip()
    assert code == 1 and "Traceback" not in text, text
    assert re.search(message, text) and "bad.yaml" in text, text


def test_a_trainer_config_is_checked_on_load(mixdir, tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    for body, message in [
        ("preset: tiny\nlr: fast\n", "expected float, got str"),
        ("preset: tiny\nlayerz: 3\n", "unknown key 'layerz'"),
        ("!!python/object/new:os.system [echo]\n", "refused"),
    ]:
        cfg.write_text(textwrap.dedent(body))
        code, _, err = _run(
            [
                "train",
                "--stage",
                "pretrain",
                "--mixture",
                str(mixdir / "pi05_pretrain.yaml"),
                "--config",
                str(cfg),
                "--out",
                "x",
            ],
            capsys,
        )
        _one_line_error(code, err, message, str(cfg))
