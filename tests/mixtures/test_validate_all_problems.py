"""`vlamix mixture validate` lists every problem of a mixture file in one run: schema problems of
every component and of the top level, beside missing layouts and unknown datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlamix.cli import app
from vlamix.config import ConfigError
from vlamix.mixtures.resolve import resolve
from vlamix.mixtures.spec import load_mixture, read_mixture
from vlamix.shards.manifest import build_manifest


def _validate(path: Path, *extra: str) -> tuple[int, list[str]]:
    done = CliRunner().invoke(app, ["mixture", "validate", str(path), *extra])
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    return done.exit_code, done.output.strip().splitlines()


@pytest.fixture
def layout(tmp_path) -> Path:
    """A manifest naming one CE dataset (no shards: only the names matter here)."""
    out = tmp_path / "out"
    out.mkdir()
    entry = {"kind": "CE", "shards": [], "accounting": {"unit": "episode"}}
    (out / "manifest.json").write_text(json.dumps(build_manifest("tokenizers/x", "x", {"widowx_sim": entry})))
    return out


def test_every_component_and_layout_problem_in_one_run(layout, tmp_path):
    f = tmp_path / "mix.yaml"
    f.write_text(
        "name: mix\nstage: pretrain\nlayouts: [out/manifest.json, nowhere/manifest.json]\ncomponents:\n"
        "  - {dataset: widowx_sim, wieght: 2}\n"  # an unknown key
        "  - {dataset: widowx_sim, weight: -1}\n"  # a negative weight, in another component
        "  - {dataset: widowx_simm}\n"  # an unknown dataset
        "  - {kind: XX, filter: {max_seconds: -3, spilt: train}}\n"  # problems in a filter and beside it
        "  - {dataset: widowx_sim, weight: heavy}\n"  # a value of the wrong type
    )
    code, lines = _validate(f)
    assert code == 1
    assert all(line.startswith("problem: ") for line in lines), lines
    expected = [
        "mix.yaml.components[0]: unknown key 'wieght' (did you mean 'weight'?)",
        "mix.yaml.components[1]: weight -1.0 must be a positive, finite number",
        "mix.yaml.components[3].filter: unknown key 'spilt' (did you mean 'split'?)",
        "mix.yaml.components[3].filter: max_seconds -3.0 must be a positive number",
        "mix.yaml.components[3]: kind 'XX' is not one of",
        "mix.yaml.components[4].weight: expected float, got str 'heavy'",
        "nowhere/manifest.json: no manifest",
        "components[2] (widowx_simm): unknown dataset 'widowx_simm' (did you mean 'widowx_sim'?)",
    ]
    for text in expected:
        assert sum(text in line for line in lines) == 1, (text, lines)
    assert len(lines) == len(expected) + 1  # + the valid component's dataset, which has no samples here
    assert any("components[0] (widowx_sim): dataset 'widowx_sim' has no sample left" in x for x in lines)


def test_top_level_problems_are_listed_each(tmp_path):
    f = tmp_path / "top.yaml"
    f.write_text("name: [not, text]\nstage: midtrain\nlayoutz: []\ncomponents: 3\n")
    code, lines = _validate(f)
    assert code == 1
    for text in (
        "top.yaml.name: expected str, got list",
        "top.yaml.stage: 'midtrain' is not one of ['pretrain', 'posttrain']",
        "top.yaml: unknown key 'layoutz' (did you mean 'layouts'?)",
        "top.yaml.components: expected a list, got int",
        "a top-level mixture needs `layouts:`",
    ):
        assert any(text in line for line in lines), (text, lines)
    missing = tmp_path / "missing.yaml"
    missing.write_text("layouts: [out/manifest.json]\n")
    code, lines = _validate(missing)
    assert code == 1
    assert any("missing required key 'name'" in line for line in lines)
    assert any("missing required key 'stage'" in line for line in lines)
    assert any("missing required key 'components'" in line for line in lines)


def test_json_lists_the_same_problems(layout, tmp_path):
    f = tmp_path / "mix.yaml"
    f.write_text(
        "name: mix\nstage: pretrain\nlayouts: [out/manifest.json]\n"
        "components: [{dataset: widowx_sim, wieght: 2}, {dataset: widowx_sim, weight: 0}]\n"
    )
    code, lines = _validate(f, "--json")
    problems = json.loads("\n".join(lines))["problems"]
    assert code == 1
    assert any("components[0]: unknown key 'wieght'" in p for p in problems)
    assert any("components[1]: weight 0.0 must be" in p for p in problems)


def test_a_nested_files_problems_name_it_and_its_parent(layout, tmp_path):
    (tmp_path / "child.yaml").write_text(
        "name: child\nstage: pretrain\ncomponents: [{dataset: widowx_sim, balanse: size}, {dataset: widowx_sim, weight: -2}]\n"
    )
    f = tmp_path / "parent.yaml"
    f.write_text(
        "name: parent\nstage: pretrain\nlayouts: [out/manifest.json]\ncomponents: [{mixture: child.yaml, weigth: 1}]\n"
    )
    code, lines = _validate(f)
    assert code == 1
    assert any("parent.yaml.components[0]: unknown key 'weigth'" in line for line in lines)
    child = [line for line in lines if "components[0] (mixture child.yaml): " in line]
    assert any(
        "child.yaml.components[0]: unknown key 'balanse' (did you mean 'balance'?)" in x for x in child
    )
    assert any("child.yaml.components[1]: weight -2.0 must be" in x for x in child)


def test_strict_readers_raise_every_schema_problem_at_once(tmp_path):
    f = tmp_path / "mix.yaml"
    f.write_text(
        "name: mix\nstage: pretrain\nlayouts: [out/manifest.json]\n"
        "components: [{dataset: a, wieght: 2}, {dataset: b, weight: -1}]\n"
    )
    spec, problems = read_mixture(f)
    assert len(problems) == 2 and [c and c.dataset for c in spec.components] == ["a", None]
    for read in (load_mixture, resolve):
        with pytest.raises(ConfigError) as e:
            read(f)
        assert "unknown key 'wieght'" in str(e.value) and "weight -1.0 must be" in str(e.value)
        assert "\n" not in str(e.value)


def test_an_unreadable_file_is_one_line(tmp_path):
    f = tmp_path / "tag.yaml"
    f.write_text("name: x\nstage: pretrain\ncomponents:\n  - !!python/object/apply:os.system [echo pwned]\n")
    code, lines = _validate(f)
    assert code == 1 and len(lines) == 1 and "refused" in lines[0]
    code, lines = _validate(tmp_path / "absent.yaml")
    assert code == 1 and len(lines) == 1 and "no such mixture file" in lines[0]
