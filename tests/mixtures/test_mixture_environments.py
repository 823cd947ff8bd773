"""Mixtures over environments (docs/design.md §24), against the bundled layout: the seeded nested choice of
N rooms, named and excluded rooms, the sampler drawing only from the rooms kept, `mixture sweep`,
`heldout_of` in `mixture validate`, and the environments in `mixture stats`."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import REPO

from vlamix.config import ConfigError
from vlamix.mixtures.environments import choose, environment_order
from vlamix.mixtures.resolve import resolve
from vlamix.mixtures.sampler import MixtureSampler
from vlamix.mixtures.spec import EnvironmentCount, load_mixture
from vlamix.mixtures.stats import format_stats, mixture_stats, write_report
from vlamix.mixtures.sweep import write_sweep, write_sweep_report

ROOMS = ["kitchen", "workshop", "living_room", "lab"]  # the bundled ME samples' rooms


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vlamix.cli", "mixture", *args], capture_output=True, text=True, cwd=REPO
    )


def _mixture(folder, name: str, components: str, extra: str = ""):
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nstage: pretrain\nlayouts: [../out/manifest.json]\n{extra}components:\n{components}"
    )
    return path


def _rooms(res, kinds=("ME",), datasets=("me_subtasks",)) -> set[str]:
    """The rooms the mixture's ME rows (and the HL spans over ME episodes) come from."""
    return {
        env
        for e in res.entries
        if e.kind in kinds or e.dataset in datasets
        for env in e.rows.column("environment").to_pylist()
        if env is not None
    }


@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
def test_the_seeded_choice_is_nested(seed):
    pool = [*ROOMS, "garage", "office"]
    chosen = [choose(pool, EnvironmentCount(n, seed)) for n in range(1, len(pool) + 1)]
    for small, large in itertools.pairwise(chosen):
        assert set(small) < set(large) and large[: len(small)] == small
    assert chosen[-1] == environment_order(pool, seed) and sorted(chosen[-1]) == sorted(pool)
    # a room added to the pool moves none of the others: their relative order stays
    grown = environment_order([*pool, "attic"], seed)
    assert [r for r in grown if r != "attic"] == chosen[-1]
    assert choose(pool, EnvironmentCount(3, seed), exclude=[chosen[-1][0]]) == chosen[-1][1:4]


@pytest.mark.slow
def test_counts_1_to_4_choose_nested_rooms_of_the_bundled_layout(mixdir):
    base = (mixdir / "pi05_pretrain_envs_4.yaml").read_text()
    previous: set[str] = set()
    for n in range(1, 5):
        f = mixdir / f"n{n}.yaml"
        f.write_text(
            base.replace("count: 4", f"count: {n}").replace("name: pi05_pretrain_envs_4", f"name: n{n}")
        )
        res = resolve(f)
        assert not res.problems, res.problems
        (me, hl) = res.choices  # the ME component and the HL spans over ME episodes: the same rooms
        assert me.environments == hl.environments and len(me.environments) == n
        assert set(me.environments) > previous and sorted(me.pool) == sorted(ROOMS)
        assert _rooms(res) == set(me.environments)  # no ME or HL row from another room
        previous = set(me.environments)
    f = mixdir / "n5.yaml"
    f.write_text(base.replace("count: 4", "count: 5"))
    problems = resolve(f, strict=False).problems
    assert any("asks for 5 environments (seed 0)" in p and "have 4" in p for p in problems)


@pytest.mark.slow
def test_named_excluded_and_unknown_rooms(mixdir):
    res = resolve(_mixture(mixdir, "named", "  - {kind: ME, filter: {environments: [kitchen, lab]}}\n"))
    assert not res.problems and _rooms(res) == {"kitchen", "lab"}
    assert {e.dataset for e in res.entries} == {"lerobot_v21_sim", "lerobot_v30_sim", "gr00t_sim"}
    res = resolve(_mixture(mixdir, "kitchen", "  - {kind: ME, filter: {environments: [kitchen]}}\n"))
    assert [e.dataset for e in res.entries] == ["lerobot_v21_sim"]  # the others were recorded elsewhere
    assert any("'gr00t_sim' has no sample in the environments chosen; left out" in w for w in res.warnings)
    res = resolve(
        _mixture(
            mixdir,
            "excluded",
            "  - {kind: ME, filter: {exclude_environments: [living_room]}}\n"
            "  - {kind: WD, filter: {exclude_environments: [living_room]}}\n",
        )
    )
    assert _rooms(res) == {"kitchen", "workshop", "lab"}
    web = [e for e in res.entries if e.kind == "WD"]
    assert web and all(
        e.samples == len(pq.read_table(mixdir.parent / f"out/index/{e.dataset}.parquet")) for e in web
    )
    bad = _mixture(mixdir, "typo", "  - {kind: ME, filter: {environments: [kitchn]}}\n")
    assert any(
        "unknown environment 'kitchn' (did you mean 'kitchen'?)" in p
        for p in resolve(bad, strict=False).problems
    )
    clash = _mixture(
        mixdir, "clash", "  - {kind: ME, filter: {environments: [lab], exclude_environments: [lab]}}\n"
    )
    with pytest.raises(
        ConfigError, match="environment 'lab' is both in environments and exclude_environments"
    ):
        load_mixture(clash)
    with pytest.raises(ConfigError, match="environments count 0 must be a whole number >= 1"):
        load_mixture(_mixture(mixdir, "zero", "  - {kind: ME, filter: {environments: {count: 0}}}\n"))


@pytest.mark.slow
def test_the_sampler_draws_only_from_the_rooms_kept(mixdir):
    f = _mixture(
        mixdir,
        "two_rooms",
        "  - {kind: ME, weight: 3, balance: size, filter: {environments: [kitchen, lab]}}\n"
        "  - {dataset: me_subtasks, weight: 1, filter: {environments: [kitchen, lab]}}\n",
    )
    res = resolve(f)
    draws = MixtureSampler(res, seed=3).take(3000)
    index = {}
    for name in {d.dataset for d in draws}:
        t = pq.read_table(mixdir.parent / f"out/index/{name}.parquet", columns=["key", "environment"])
        index.update(zip(t.column("key").to_pylist(), t.column("environment").to_pylist(), strict=True))
    assert {index[d.key] for d in draws} == {d.environment for d in draws} == {"kitchen", "lab"}
    assert all(index[d.key] == d.environment for d in draws)


@pytest.mark.slow
def test_sweep_writes_the_shipped_mixtures_and_stats_count_their_rooms(mixdir, tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    shutil.copy(mixdir / "pi05_pretrain_envs_4.yaml", out)  # the shipped sweep's base, beside its outputs
    done = _cli("sweep", str(out / "pi05_pretrain_envs_4.yaml"), "--environments", "1,2,4", "--out", str(out))
    assert done.returncode == 0, done.stderr
    for n in (1, 2, 4):  # the shipped files are this command's output, byte for byte
        assert (out / f"pi05_pretrain_envs_{n}.yaml").read_bytes() == (
            REPO / f"mixtures/pi05_pretrain_envs_{n}.yaml"
        ).read_bytes()
    files = [str(mixdir / f"pi05_pretrain_envs_{n}.yaml") for n in (1, 2, 4)]
    s = json.loads(_cli("stats", *files, "--json", "--steps", "100", "--batch-size", "8").stdout)
    sweep = s["sweep"]
    assert [r["mixture"] for r in sweep] == [
        "pi05_pretrain_envs_1",
        "pi05_pretrain_envs_2",
        "pi05_pretrain_envs_4",
    ]
    chosen = [r["chosen"] for r in sweep]
    assert [len(c) for c in chosen] == [1, 2, 4] and chosen[1][:1] == chosen[0] and chosen[2][:2] == chosen[1]
    # the other kinds keep their rooms: every count adds exactly its new rooms to the mixture's total
    counts = [r["environment_count"] for r in sweep]
    assert counts[1] - counts[0] == 1 and counts[2] - counts[1] == 2
    for m, r in zip(s["mixtures"], sweep, strict=True):
        assert m["environment_count"] == len(m["environments"]) == r["environment_count"]
        shares = sum(d["share"] for d in m["environments"].values()) + m["no_environment_share"]
        assert shares == pytest.approx(1.0, abs=1e-5)
        me = {env for d in m["datasets"] if d["kind"] == "ME" for env in d["environments"]}
        assert me == set(r["chosen"])
        assert all(d["episodes"] >= 1 and d["samples"] >= d["episodes"] for d in m["environments"].values())
    pages = {r["mixture"]: tmp_path / r["mixture"] / "index.html" for r in sweep}
    page = write_sweep_report(sweep, pages, tmp_path).read_text()
    assert all(f"{r['mixture']}/index.html" in page for r in sweep) and "data:image/png;base64," in page
    res = resolve(files[0])
    one = mixture_stats(res, 100, 8)
    assert one == {**s["mixtures"][0], "problems": res.problems, "warnings": res.warnings}
    text = format_stats(one)
    assert f"environments: {counts[0]} " in text and "chosen: 1 of 4 environments (seed 0)" in text
    small = resolve(
        _mixture(mixdir, "small", "  - {kind: ME, filter: {environments: {count: 2, seed: 0}}}\n")
    )
    html = write_report(small, mixture_stats(small, 100, 8), tmp_path / "small").read_text()
    assert "<h2>Environments (2)</h2>" in html and "<td>living_room</td>" in html and "<li>2 of 4" in html


@pytest.mark.slow
def test_sweep_refusals_are_one_line(mixdir, tmp_path):
    done = _cli("sweep", str(mixdir / "pi05_pretrain.yaml"), "--environments", "1,2", "--out", str(tmp_path))
    assert (
        done.returncode == 2
        and "no component has `filter: {environments: {count: N, seed: S}}`" in done.stderr
    )
    assert len(done.stderr.strip().splitlines()) == 1
    done = _cli(
        "sweep", str(mixdir / "pi05_pretrain_envs_4.yaml"), "--environments", "1,1,x", "--out", str(tmp_path)
    )
    assert done.returncode == 2 and "give distinct whole numbers >= 1" in done.stderr


@pytest.mark.slow
def test_a_heldout_pair_that_shares_a_room_fails_validation_naming_it(mixdir):
    heldout = (mixdir / "pi05_posttrain_heldout_home.yaml").read_text()
    assert "heldout_of: pi05_posttrain_test_home.yaml" in heldout
    assert _rooms(resolve(mixdir / "pi05_posttrain_test_home.yaml")) == {"living_room"}
    res = resolve(mixdir / "pi05_posttrain_heldout_home.yaml")
    assert not res.problems and "living_room" not in _rooms(res) and _rooms(res) >= {"kitchen", "lab"}
    leaky = mixdir / "leaky.yaml"  # the ME component forgot to hold the living room out
    leaky.write_text(
        heldout.replace("max_seconds: 60, exclude_environments: [living_room]", "max_seconds: 60")
    )
    done = _cli("validate", str(leaky))
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stdout
    assert (
        "heldout_of pi05_posttrain_test_home.yaml: both mixtures draw from environment 'living_room'"
        in lines[0]
    )
    assert (
        "lerobot_v21_sim" in lines[0]
        and "me_subtasks" not in lines[0].split("this one through")[1].split(";")[0]
    )
    missing = mixdir / "missing.yaml"
    missing.write_text(heldout.replace("pi05_posttrain_test_home.yaml", "nowhere.yaml"))
    assert any(
        "heldout_of nowhere.yaml" in p and "no such mixture file" in p
        for p in resolve(missing, strict=False).problems
    )


def test_a_sweep_elsewhere_reaches_the_same_files(tmp_path):
    base_dir = tmp_path / "a"
    base_dir.mkdir()
    base = base_dir / "study_envs_3.yaml"
    base.write_text(
        "# my study\nname: study_envs_3\nstage: posttrain\nlayouts: [../out/manifest.json, s3://b/m.json]\n"
        "heldout_of: specialist.yaml\ncomponents:\n"
        "  - {kind: ME, weight: 2, filter: {success: true, environments: {count: 3, seed: 5}}}\n"
        "  - {mixture: nested.yaml, weight: 1}\n"
    )
    out = tmp_path / "b" / "c"
    written = write_sweep(base, [2, 1], out)
    assert [p.name for p in written] == ["study_envs_2.yaml", "study_envs_1.yaml"]
    text = written[1].read_text()
    assert text.startswith(
        "# my study\n# Written by `vlamix mixture sweep study_envs_3.yaml --environments 2,1` (count 1)."
    )
    spec = load_mixture(written[1])
    assert spec.name == "study_envs_1" and spec.stage == "posttrain"
    assert spec.components[0].filter.environments == EnvironmentCount(1, 5)
    assert spec.components[0].filter.success is True
    assert spec.layouts is not None and spec.layouts[1] == "s3://b/m.json"
    for mine, theirs in (
        (spec.layouts[0], "../out/manifest.json"),
        (spec.heldout_of, "specialist.yaml"),
        (spec.components[1].mixture, "nested.yaml"),
    ):
        assert (out / mine).resolve() == (base_dir / theirs).resolve()
