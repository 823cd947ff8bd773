"""Mixture files, `vlamix mixture validate|stats`, and the sampler, against the bundled layout."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from vlamix.config import ConfigError
from vlamix.mixtures.resolve import resolve, split_view
from vlamix.mixtures.sampler import MixtureSampler
from vlamix.mixtures.spec import load_mixture
from vlamix.mixtures.stats import mixture_stats

pytestmark = pytest.mark.slow
SHIPPED = sorted((REPO / "mixtures").glob("*.yaml"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vlamix.cli", "mixture", *args], capture_output=True, text=True, cwd=REPO
    )


def test_every_shipped_mixture_validates(mixdir):
    assert len(SHIPPED) == 11
    for f in SHIPPED:
        done = _cli("validate", str(mixdir / f.name))
        assert done.returncode == 0, f.name + done.stdout + done.stderr


def test_pretrain_stats_reproduce_the_papers_non_mm_share_and_write_a_report(mixdir, tmp_path):
    done = _cli("stats", str(mixdir / "pi05_pretrain.yaml"), "--report", str(tmp_path / "mix"))
    assert done.returncode == 0, done.stderr
    assert "non-MM share: 97.6%" in done.stdout
    page = (tmp_path / "mix" / "index.html").read_text()
    assert page.count("<img src='data:image/png;base64,") >= 4 and "pi05_pretrain" in page
    s = json.loads(
        _cli(
            "stats", str(mixdir / "pi05_pretrain.yaml"), "--json", "--steps", "100", "--batch-size", "8"
        ).stdout
    )
    assert s["non_mm_share"] == pytest.approx(0.976) and sum(
        d["share"] for d in s["datasets"]
    ) == pytest.approx(1.0, abs=1e-5)  # shares are rounded one by one in the JSON
    ce = [d for d in s["datasets"] if d["kind"] == "CE"]  # balance: size splits CE's 40% by sample counts
    assert ce[0]["share"] / ce[1]["share"] == pytest.approx(ce[0]["samples"] / ce[1]["samples"], rel=1e-4)
    assert all(d["draws"] == pytest.approx(d["share"] * 800, abs=0.1) for d in s["datasets"])
    no_ce = json.loads(_cli("stats", str(mixdir / "pi05_pretrain_no_ce.yaml"), "--json").stdout)
    assert "CE" not in no_ce["kinds"]
    post = json.loads(_cli("stats", str(mixdir / "pi05_posttrain.yaml"), "--json").stdout)
    assert set(post["kinds"]) == {"MM", "ME", "WD", "HL", "VI"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("components: [{dataset: widowx_sim, weight: -1}]", "weight -1.0 must be a positive, finite number"),
        ("components: [{dataset: widowx_sim, weight: 0}]", "weight 0.0 must be a positive, finite number"),
        ("components: [{dataset: widowx_sim, weight: .nan}]", "must be a positive, finite number"),
        ("components: [{dataset: widowx_sim, weight: heavy}]", "expected float, got str"),
        ("components: [{dataset: widowx_sim, wieght: 2}]", "did you mean 'weight'"),
        ("components: [{dataset: widowx_sim, kind: CE}]", "give exactly one of dataset, kind or mixture"),
        ("components:\n  - !!python/object/apply:os.system [echo pwned]", "refused"),
    ],
)
def test_broken_mixture_files_are_one_line_problems(body, message, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(f"name: bad\nstage: pretrain\nlayouts: [../out/manifest.json]\n{body}\n")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_mixture(f)
    done = _cli("validate", str(f))
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert message in lines[0] and all(line.startswith("problem: ") for line in lines)
    if "refused" in message:  # never parsed further
        assert len(lines) == 1, lines
    else:  # the layout is missing here too: validate lists that as well
        assert any("no manifest" in line for line in lines[1:]), lines


def test_validate_lists_every_problem(mixdir):
    (mixdir / "loop_a.yaml").write_text("name: a\nstage: pretrain\ncomponents: [{mixture: loop_b.yaml}]\n")
    (mixdir / "loop_b.yaml").write_text("name: b\nstage: pretrain\ncomponents: [{mixture: loop_a.yaml}]\n")
    f = mixdir / "broken.yaml"
    f.write_text(
        "name: broken\nstage: posttrain\nlayouts: [../out/manifest.json, ../nowhere/manifest.json]\n"
        "components:\n"
        "  - {dataset: widowx_simm}\n"
        "  - {dataset: mobile_aloha_sim, filter: {max_seconds: 1}}\n"
        "  - {mixture: loop_a.yaml}\n"
        "  - {kind: CE}\n"
    )
    done = _cli("validate", str(f))
    out = done.stdout
    assert done.returncode == 1
    assert "nowhere/manifest.json" in out and "did you mean 'widowx_sim'" in out
    assert "no sample left after the filter" in out and "nesting cycle" in out
    assert "warning: CE data in post-training" in out


def test_nested_mixture_reads_a_dataset_once_with_summed_weight(mixdir):
    (mixdir / "inner.yaml").write_text("name: inner\nstage: pretrain\ncomponents: [{kind: CE}]\n")
    (mixdir / "outer.yaml").write_text(
        "name: outer\nstage: pretrain\nlayouts: [../out/manifest.json]\ncomponents:\n"
        "  - {dataset: widowx_sim, weight: 1}\n  - {mixture: inner.yaml, weight: 2}\n  - {kind: WD, weight: 1}\n"
    )
    res = resolve(mixdir / "outer.yaml")
    assert not res.problems
    by = {e.dataset: e for e in res.entries}
    assert [e.dataset for e in res.entries].count("widowx_sim") == 1
    ce = [e.dataset for e in res.entries if e.kind == "CE"]
    assert len(ce) == 5  # widowx_sim, arm6_sim, robomimic_sim, ros2_sim, umi_sim
    assert by["widowx_sim"].share == pytest.approx(
        (1 + 2 / len(ce)) / 4
    )  # 1 direct + its part of the nested 2
    assert by["arm6_sim"].share == pytest.approx(2 / len(ce) / 4)


def _nested_filtered(mixdir) -> Path:
    (mixdir / "robots.yaml").write_text(
        "name: robots\nstage: pretrain\ncomponents:\n"
        "  - {kind: CE, balance: size, filter: {split: train}}\n  - {dataset: mobile_aloha_sim, filter: {max_seconds: 13}}\n"
    )
    f = mixdir / "mix.yaml"
    f.write_text(
        "name: mix\nstage: pretrain\nlayouts: [../out/manifest.json]\ncomponents:\n"
        "  - {mixture: robots.yaml, weight: 3}\n  - {kind: WD, weight: 1}\n  - {dataset: mm_subtasks, weight: 1}\n"
    )
    return f


def test_sampler_shares_match_the_stats(mixdir):
    res = resolve(_nested_filtered(mixdir))
    assert not res.problems
    want = {d["label"]: d["share"] for d in mixture_stats(res, 1, 1)["datasets"]}
    n = 20_000
    got = collections.Counter(d.label for d in MixtureSampler(res, seed=3).take(n))
    for label, share in want.items():
        assert got[label] / n == pytest.approx(share, abs=0.012), label  # 3+ sigma at n=20,000
    # the filters hold: only train-split CE rows, only episodes shorter than 13 s, and every draw is a row
    keys = {e.label: set(e.rows.column("key").to_pylist()) for e in res.entries}
    for e in res.entries:
        if e.kind == "CE":
            assert set(e.rows.column("split").to_pylist()) == {"train"}
        if e.dataset == "mobile_aloha_sim":
            assert 0 < e.samples < 1967 and max(e.rows.column("duration").to_pylist()) < 13
    assert all(d.key in keys[d.label] for d in MixtureSampler(res, seed=3).take(2000))


def test_every_sample_once_per_epoch_across_ranks_and_workers(mixdir):
    res = resolve(_nested_filtered(mixdir))
    readers = [
        MixtureSampler(res, seed=5, rank=r, world=4, worker=w, workers=2) for r in range(4) for w in range(2)
    ]
    draws = [d for s in readers for d in s.take(600)]  # the first 4,800 global draws
    assert sorted(d.step for d in draws) == list(range(4800))  # the readers split the stream exactly
    for e in res.entries:
        epoch0 = [d.key for d in draws if d.label == e.label and d.epoch == 0]
        if len([d for d in draws if d.label == e.label]) >= e.samples:  # the first epoch is complete
            assert sorted(epoch0) == sorted(e.rows.column("key").to_pylist()), e.label
    small = next(e for e in res.entries if e.dataset == "web_parquet")  # 1 shard, 8 readers
    assert len({d.key for d in draws if d.label == small.label and d.epoch == 0}) == small.samples


def test_sampler_resumes_mid_epoch_exactly(mixdir):
    res = resolve(_nested_filtered(mixdir))
    whole = MixtureSampler(res, seed=9, rank=1, world=2).take(5000)
    first = MixtureSampler(res, seed=9, rank=1, world=2)
    head = first.take(4321)
    state = json.loads(json.dumps(first.state_dict()))  # a small state dict, JSON-safe
    again = MixtureSampler(res, seed=9, rank=1, world=2)
    again.load_state_dict(state)
    assert head + again.take(679) == whole
    with pytest.raises(ValueError, match="another run"):
        MixtureSampler(res, seed=10, rank=1, world=2).load_state_dict(state)


def test_draws_read_their_sample_by_byte_range(mixdir):
    from vlamix.shards.random_access import read_sample

    res = resolve(_nested_filtered(mixdir))
    for d in MixtureSampler(res, seed=1).take(50):
        sample = read_sample(d.layout, d.shard, d.offset, d.length, key=d.key)
        assert json.loads(sample["meta.json"])["key"] == d.key and "input_ids.npy" in sample


def test_layouts_with_other_tokenizers_or_schemas_are_problems(mixdir, bundled, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for part in ("shards", "index", "stats", "tokenizers", "embodiments"):
        (other / part).symlink_to(bundled / part)
    m = json.loads((bundled / "manifest.json").read_text())
    m["datasets"] = {"web_parquet_b": m["datasets"]["web_parquet"]}
    m["tokenizer_set"]["sha256"] = "0" * 64
    m["schema_versions"]["sample"] += 1
    (other / "manifest.json").write_text(json.dumps(m))
    f = mixdir / "two.yaml"
    f.write_text(
        f"name: two\nstage: pretrain\nlayouts: [../out/manifest.json, {other}/manifest.json]\n"
        "components: [{dataset: widowx_sim}, {dataset: web_parquet_b}]\n"
    )
    done = _cli("validate", str(f))
    assert done.returncode == 1
    assert "2 different tokenizer sets" in done.stdout and "different schema versions" in done.stdout


def test_split_view_holds_out_the_val_rows(mixdir):
    """The trainer never trains on `val` rows and measures its held-out loss on exactly those."""
    res = resolve(mixdir / "pi05_pretrain.yaml")
    train, val = split_view(res, held_out=False), split_view(res, held_out=True)
    held_out = {e.dataset for e in val.entries}  # the TFDS val splits, and seeded ones of the new formats
    assert {"arm6_sim", "widowx_sim"} <= held_out and "mobile_aloha_sim" not in held_out
    assert "no val split in:" in val.warnings[-1] and "mobile_aloha_sim" in val.warnings[-1]
    sizes = {e.label: e.samples for e in res.entries}
    held = {e.label: e.samples for e in val.entries}
    assert {e.label: e.samples + held.get(e.label, 0) for e in train.entries} == sizes
    assert all(set(e.rows.column("split").to_pylist()) == {"val"} for e in val.entries)
    assert all("val" not in e.rows.column("split").to_pylist() for e in train.entries)
    assert (
        abs(sum(e.share for e in val.entries) - 1) < 1e-12
        and abs(sum(e.share for e in train.entries) - 1) < 1e-12
    )
    assert [e.share for e in train.entries] == pytest.approx([e.share for e in res.entries])
