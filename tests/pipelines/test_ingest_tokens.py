"""Statistics, FAST and text tokens of `vlamix ingest` on the bundled samples (the session's ingest)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import REPO, first_sample

from vlamix.shards.layout import WORK_DIR
from vlamix.shards.workdir import WorkDir

pytestmark = pytest.mark.slow


def test_stats_equal_numpy_percentiles_over_the_chunks(bundled):
    """Recompute every robot dataset's statistics here, by plain loops over frames and chunk steps."""
    import numpy as np

    from vlamix.schemas.embodiment import load_embodiment

    manifest = json.loads((bundled / "manifest.json").read_text())
    for name, entry in manifest["datasets"].items():
        if entry["kind"] not in ("MM", "ME", "CE"):
            continue
        stats = json.loads((bundled / entry["stats"]["path"]).read_text())
        emb = load_embodiment(bundled / entry["embodiment_spec"])
        grip = [i for i, d in enumerate(emb.action) if d.kind == "gripper"]
        rows = []
        for part in sorted((bundled / WorkDir.frames(name)).glob("*.parquet")):
            actions = np.asarray(
                pq.read_table(part, columns=["action"]).column("action").to_pylist(), dtype=np.float64
            )
            if emb.gripper is not None:
                actions[:, grip] = (actions[:, grip] - emb.gripper.open) / (
                    emb.gripper.closed - emb.gripper.open
                )
            for t in range(len(actions)):
                for h in range(emb.chunk_horizon):
                    rows.append(actions[min(t + h, len(actions) - 1)])
        rows = np.asarray(rows)
        assert stats["actions"]["count"] == len(rows), name
        for p in (1, 2, 5, 50, 95, 98, 99):
            np.testing.assert_allclose(
                stats["actions"][f"q{p:02d}"],
                np.percentile(rows, p, axis=0),
                rtol=1e-6,
                atol=1e-7,
                err_msg=f"{name} q{p:02d}",
            )
        np.testing.assert_allclose(stats["actions"]["mean"], rows.mean(axis=0), rtol=1e-6, atol=1e-7)


def test_shards_carry_tokens_that_decode_back(bundled):
    import numpy as np

    from vlamix.schemas.embodiment import load_embodiment
    from vlamix.tokenizers.tokenizer_set import load_tokenizer_set

    manifest = json.loads((bundled / "manifest.json").read_text())
    tok = load_tokenizer_set(str(bundled / manifest["tokenizer_set"]["path"]))
    fast_start = tok.ranges["fast"][0]
    for name in ("mobile_aloha_sim", "widowx_sim", "mm_subtasks", "web_coco"):
        entry = manifest["datasets"][name]
        s = first_sample(bundled, name)
        ids = np.load(io.BytesIO(s["input_ids.npy"]))
        mask = np.load(io.BytesIO(s["loss_mask.npy"]))
        assert len(ids) == len(mask) and mask.any() and not mask[0]
        if entry["kind"] == "WD":
            assert "fast_ids.npy" not in s
            continue
        emb = load_embodiment(bundled / entry["embodiment_spec"])
        fast = np.load(io.BytesIO(s["fast_ids.npy"]))
        actions = np.load(io.BytesIO(s["actions.npy"]))[: emb.chunk_horizon, : emb.action_dim]
        back, ok = tok.fast.decode([list(fast - fast_start)], emb.chunk_horizon, emb.action_dim)
        assert ok[0], name
        assert np.abs(back[0] - actions).max() <= 0.5 * np.sqrt(emb.chunk_horizon) / tok.fast.scale + 1e-6
        assert set(fast.tolist()) <= set(ids.tolist())


def test_fast_tokens_per_chunk_land_in_the_table_i_band(bundled):
    """FAST paper, Table I (1-second chunks): BridgeV2 7-dim 5 Hz ~20 tokens, DROID 7-dim 15 Hz ~29,
    bussing 7-dim 20 Hz ~28, shirt fold 14-dim 50 Hz ~53. Samples and tokenizer must land within 0.5-2x."""
    paper = {"widowx_sim": 20, "arm6_sim": 29, "lerobot_v21_sim": 28, "mobile_aloha_sim": 53}
    for name, tokens in paper.items():
        mean = (
            pq.read_table(bundled / "index" / f"{name}.parquet", columns=["fast_tokens"])
            .column("fast_tokens")
            .to_numpy()
            .mean()
        )
        assert 0.5 * tokens <= mean <= 2.0 * tokens, (name, mean, tokens)


def test_reusing_a_tokenizer_set_keeps_its_hash(bundled, tmp_path):
    manifest = json.loads((bundled / "manifest.json").read_text())
    out = tmp_path / "again"
    shutil.copytree(bundled / WORK_DIR, out / WORK_DIR)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlamix.cli",
            "ingest",
            "--out",
            str(out),
            "--only",
            "tokenizers",
            "--tokenizers",
            str(bundled / manifest["tokenizer_set"]["path"]),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / WorkDir.TOKENIZER_SET).read_text()) == manifest["tokenizer_set"]


def test_fast_report_meets_the_table_i_band(bundled):
    done = subprocess.run(
        [sys.executable, "-m", "vlamix.cli", "fast", "report", str(bundled), "--json", "--max-chunks", "500"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert set(report["datasets"]) == {
        "mobile_aloha_sim",
        "lerobot_v21_sim",
        "lerobot_v30_sim",
        "gr00t_sim",
        "widowx_sim",
        "arm6_sim",
        "robomimic_sim",
        "ros2_sim",
        "umi_sim",
    }
    # Table I's band holds for the five samples of realistic length; the format samples of issue 24 are a
    # few seconds each (gr00t_sim: 2 x 1 s), too short for a rate of tokens per second to mean much
    banded = {"mobile_aloha_sim", "lerobot_v21_sim", "lerobot_v30_sim", "widowx_sim", "arm6_sim"}
    for name, d in report["datasets"].items():
        if name in banded:
            assert 0.5 <= d["table_i"]["ratio"] <= 2.0, (name, d["table_i"])
        assert d["out_of_range"] == 0 and d["invalid_decodes"] == 0
        assert d["rmse_normalized"] <= 0.5 / report["scale"]
        assert d["compression"] > 1 and len(d["rmse_native_per_dim"]) == d["dims"]


def test_a_downloaded_text_tokenizer_can_replace_the_trained_one(bundled, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    user = Tokenizer(models.WordLevel({"[UNK]": 0, "put": 1, "the": 2}, unk_token="[UNK]"))
    user.pre_tokenizer = pre_tokenizers.Whitespace()
    user.save(str(tmp_path / "tokenizer.json"))
    out = tmp_path / "again"
    shutil.copytree(bundled / WORK_DIR, out / WORK_DIR)
    shutil.copytree(bundled / "stats", out / "stats")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlamix.cli",
            "ingest",
            "--out",
            str(out),
            "--only",
            "tokenizers",
            "--text-tokenizer",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ref = json.loads((out / WorkDir.TOKENIZER_SET).read_text())
    layout = json.loads((out / ref["path"] / "vocab_layout.json").read_text())
    assert layout["text"] == 3 and layout["ranges"]["loc"][0] == len(layout["specials"]) + 3
    assert ref["sha256"] != json.loads((bundled / "manifest.json").read_text())["tokenizer_set"]["sha256"]
