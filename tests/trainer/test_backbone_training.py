"""The trainer on a pretrained backbone, end to end, without network (`HF_HUB_OFFLINE=1`): a tiny
PaliGemma snapshot (random weights and a tokenizer with the real vocabulary's shape, saved by
`transformers` / `tokenizers`) is the `--backbone`; the bundled layout is rebuilt for its vocabulary
(`vlamix ingest --backbone`: tokenizers, build and index again over the same extracted episodes), stage
1 and stage 2 train from it with falling losses, and a checkpoint that has learned one sample gives back
the subtask and an action chunk in native units through `vlamix predict`. Layouts built for another
vocabulary are refused with one line saying how to rebuild them."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from backbone_snapshot import tiny_snapshot, tiny_tokenizer
from conftest import REPO, SAMPLES, first_sample
from test_overfit_predict import PICKS, _draw, _observation, _predict, learn

from tokenizers import Tokenizer
from vlamix.pipelines.ingest import IngestOptions, run_ingest
from vlamix.shards.assets import embodiment_of
from vlamix.shards.store import Store
from vlamix.tokenizers.tokenizer_set import load_tokenizer_set
from vlamix.trainer.checkpoint import load_weights, read_state, save_checkpoint
from vlamix.trainer.data import collate
from vlamix.trainer.models import model_from_state
from vlamix.trainer.train import TrainOptions, train
from vlamix.transforms.chain import build_chain
from vlamix.transforms.native import native_chunk
from vlamix.transforms.stats import DimStats

pytestmark = pytest.mark.slow
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **OFFLINE}
    return subprocess.run(
        [sys.executable, "-m", "vlamix.cli", *args], capture_output=True, text=True, env=env, cwd=REPO
    )


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    return tiny_snapshot(tmp_path_factory.mktemp("paligemma_tiny"))


@pytest.fixture(scope="module")
def layout(bundled, snapshot, tmp_path_factory) -> Path:
    """The bundled layout rebuilt for the snapshot's vocabulary (its extracted episodes and statistics
    are the same: the tokenizers, build and index steps run again with --backbone, in this process)."""
    out = tmp_path_factory.mktemp("backbone_layout") / "out"
    shutil.copytree(bundled, out)
    for step in ("tokenizers", "build", "index"):
        opts = IngestOptions(SAMPLES / "sources.yaml", out, backbone=snapshot, only=step, progress=False)
        run_ingest(opts)
    return out


def _mixture(folder: Path, layout: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = (
        (REPO / "mixtures" / name).read_text().replace("../out/manifest.json", str(layout / "manifest.json"))
    )
    (folder / name).write_text(text)
    return folder / name


def _rows(out: Path) -> list[dict]:
    with (out / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def _mean(rows: list[dict], key: str) -> float:
    return float(np.mean([float(r[key]) for r in rows]))


def _all_ids(layout: Path, dataset: str) -> list[int]:
    """Every token id of a dataset's samples."""
    manifest = json.loads((layout / "manifest.json").read_text())
    out: list[int] = []
    for shard in manifest["datasets"][dataset]["shards"]:
        with tarfile.open(layout / shard["path"]) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".input_ids.npy"):
                    out += np.load(io.BytesIO(tar.extractfile(m).read())).tolist()
    return out


def test_the_layout_carries_the_backbones_own_token_ids(layout, snapshot):
    manifest = json.loads((layout / "manifest.json").read_text())
    tok = load_tokenizer_set(layout / manifest["tokenizer_set"]["path"])
    target = tok.layout.backbone
    assert target.tokenizer_sha256 == hashlib.sha256((snapshot / "tokenizer.json").read_bytes()).hexdigest()
    config = json.loads((snapshot / "config.json").read_text())
    assert target.vocab == config["text_config"]["vocab_size"]
    said = manifest["tokenizer_set"]["backbone"]  # the manifest and the card say which vocabulary
    assert said == {"vocab": target.vocab, "tokenizer_sha256": target.tokenizer_sha256}
    card = (layout / "README.md").read_text()
    assert f"a pretrained backbone's (vocabulary {target.vocab:,}, tokenizer.json sha256" in card
    own = Tokenizer.from_file(str(snapshot / "tokenizer.json"))
    r = tok.ranges

    sample = first_sample(layout, "mm_subtasks")
    ids = np.load(io.BytesIO(sample["input_ids.npy"])).tolist()
    prompt, subtask = sample["prompt.txt"].decode(), sample["target.txt"].decode()
    expected = [own.token_to_id("<bos>"), *own.encode(prompt, add_special_tokens=False).ids]
    expected += [own.encode("\n", add_special_tokens=False).ids[0]]  # <sep>: PaliGemma's separator
    assert ids[: len(expected)] == expected  # the backbone's own ids, its <bos> first
    assert (
        own.decode(ids[len(expected) :][: len(own.encode(subtask, add_special_tokens=False).ids)]) == subtask
    )
    fast = np.load(io.BytesIO(sample["fast_ids.npy"]))
    assert fast.min() >= target.vocab and fast.max() < r["fast"][1]  # after the backbone's whole table
    assert ids[-1] == own.token_to_id("<eos>") and max(ids) < tok.vocab_size

    web = _all_ids(layout, "web_coco")  # captions and answers: the backbone's text ids alone
    assert (
        web and max(web) < target.vocab and set(web) >= {own.token_to_id("<bos>"), own.token_to_id("<eos>")}
    )


def test_both_stages_train_from_the_snapshot_and_predict_gives_back_a_sample(layout, snapshot, tmp_path):
    mixtures = tmp_path / "mixtures"
    common = {"batch_size": 8, "lr": 3e-3, "warmup": 5, "workers": 0, "eval_batches": 0, "log_every": 30}
    s1 = tmp_path / "s1"
    train(
        TrainOptions(
            "pretrain", _mixture(mixtures, layout, "pi05_pretrain.yaml"), s1, steps=30,
            checkpoint_every=30, backbone=snapshot, **common,
        ),
        echo=lambda _: None,
    )  # fmt: skip
    rows = _rows(s1)
    first, last = _mean(rows[:5], "ce"), _mean(rows[-5:], "ce")
    assert last < first - 1.0, (first, last)
    state = read_state(s1 / "checkpoints" / "step_000030")
    assert state["model"]["snapshot"] == str(snapshot.resolve()) and state["model"]["hf_config"]
    assert state["model"]["vocab_size"] == state["model"]["backbone_vocab"] + 2 + 1024  # <action>s, FAST

    s2 = tmp_path / "s2"
    train(
        TrainOptions(
            "posttrain", _mixture(mixtures, layout, "pi05_posttrain.yaml"), s2, steps=30,
            checkpoint_every=30, init=s1 / "checkpoints" / "step_000030", **common,
        ),
        echo=lambda _: None,
    )  # fmt: skip
    rows2 = _rows(s2)
    assert _mean(rows2[-5:], "flow") < 0.85 * _mean(rows2[:5], "flow"), [r["flow"] for r in rows2]
    assert _mean(rows2[:5], "ce") < first - 0.5  # the backbone came from stage 1

    # one subtask sample learned from the stage-2 weights (the tiny SigLIP sees 28x28 pixels: too few to
    # tell two frames apart by their images), then the real CLI on its own images, native state and task
    ckpt = s2 / "checkpoints" / "step_000030"
    state = read_state(ckpt)
    model = model_from_state(state["model"], with_expert=True)
    model.load_state_dict(load_weights(ckpt))
    tok = load_tokenizer_set(
        layout / json.loads((layout / "manifest.json").read_text())["tokenizer_set"]["path"]
    )
    draws = [_draw(layout, *PICKS[0])]
    batch = collate(draws, action=tok.special("<action>"))
    torch.manual_seed(0)
    optim = learn(model, batch, 150)
    learned = save_checkpoint(tmp_path / "learned", 150, model, optim, state)
    images, native_state, sample = _observation(layout, draws[0], tmp_path)  # HF_HUB_OFFLINE: conftest
    rc, pred = _predict(learned, "mm_subtasks", images, native_state, sample["task"])
    assert rc == 0, pred
    assert pred["subtask"] == sample["target.txt"].decode() and pred["subtask_source"] == "model"
    assert pred["mode"] == "flow" and pred["valid"] and pred["embodiment"] == "mobile_aloha"
    got, target, span = np.asarray(pred["actions"]), *_native_target(layout, sample, native_state)
    assert got.shape == (50, 16) == (pred["control_rate_hz"] and len(got), len(pred["units"]))
    rel = np.abs(got[: len(target)] - target) / np.maximum(span, 1e-2)
    print(
        f"\nbackbone: native chunk error / q01..q99 span: mean {rel.mean():.4f}, p95 {np.quantile(rel, 0.95):.4f}"
    )
    assert rel.mean() < 0.2, rel.mean()  # measured here: 0.094 (the stage-2 checkpoint before: 0.45)


def _native_target(layout: Path, sample: dict, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sample's own chunk in native units, and the q01..q99 span of each action dim."""
    store = Store(layout)
    entry = json.loads((layout / "manifest.json").read_text())["datasets"]["mm_subtasks"]
    emb, stats = embodiment_of(store, entry), store.read_json(entry["stats"]["path"])
    actions = DimStats.from_json(stats["actions"])
    chain = build_chain(emb, DimStats.from_json(stats["state"]), actions, stats["normalization"])
    is_pad = np.load(io.BytesIO(sample["action_is_pad.npy"]))
    target = native_chunk(chain, emb, np.load(io.BytesIO(sample["actions.npy"])), state, is_pad)
    return target, actions.q99 - actions.q01


def test_a_layout_for_another_vocabulary_is_refused_with_one_line(bundled, layout, snapshot, tmp_path):
    own = _mixture(tmp_path / "own", bundled, "pi05_pretrain.yaml")  # built with vlamix's own vocabulary
    done = _cli("train", "--stage", "pretrain", "--mixture", str(own), "--out", str(tmp_path / "r1"),
                "--backbone", str(snapshot), "--steps", "1")  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "vlamix's own vocabulary" in done.stderr and f"vlamix ingest --backbone {snapshot}" in done.stderr

    other = tmp_path / "other"  # another tokenizer: other ids for the same words
    tiny_snapshot(other)
    tiny_tokenizer(text_size=300).save(str(other / "tokenizer.json"))
    built = _mixture(tmp_path / "built", layout, "pi05_pretrain.yaml")
    with pytest.raises(
        ValueError, match="for the backbone vocabulary of .*not for the backbone 'other'.*rebuild"
    ) as e:
        train(TrainOptions("pretrain", built, tmp_path / "r2", steps=1, backbone=other))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="carry token ids for a backbone's vocabulary .*give --backbone"):
        train(TrainOptions("pretrain", built, tmp_path / "r3", steps=1))  # the small model on them
    assert not any((tmp_path / r).exists() for r in ("r1", "r2", "r3"))
    with pytest.raises(ValueError, match="--backbone and --text-tokenizer: .*give one of them"):
        IngestOptions(
            SAMPLES / "sources.yaml", tmp_path / "o", backbone=snapshot, text_tokenizer=snapshot
        ).check()


# nightly: `make test` holds what DDP needs of the backbone model (every trainable parameter gets a
# gradient in both stages: tests/trainer/test_paligemma_loader.py); this runs it under torchrun.
@pytest.mark.nightly
def test_two_processes_train_the_backbone_as_one_does(layout, snapshot, tmp_path):
    mix = _mixture(tmp_path / "mix", layout, "pi05_pretrain.yaml")
    flags = {"steps": 4, "batch_size": 4, "lr": 3e-3, "workers": 0, "eval_batches": 0, "log_samples": True}
    train(TrainOptions("pretrain", mix, tmp_path / "one", backbone=snapshot, **flags), echo=lambda _: None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "vlamix",
    ]
    cmd += ["train", "--stage", "pretrain", "--mixture", str(mix), "--out", str(tmp_path / "two")]
    cmd += ["--steps", "4", "--batch-size", "4", "--lr", "3e-3", "--workers", "0", "--eval-batches", "0"]
    cmd += ["--log-samples", "--backbone", str(snapshot), "--precision", "bf16"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**env, **OFFLINE})
    assert done.returncode == 0, done.stderr[-3000:]
    keys = [(tmp_path / d / "samples.jsonl").read_text() for d in ("one", "two")]
    assert keys[0] == keys[1]  # the same global samples in every step
    one, two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    for a, b in zip(one, two, strict=True):  # bf16 autocast against fp32: loose
        assert float(a["ce"]) == pytest.approx(float(b["ce"]), rel=0.05), a["step"]
