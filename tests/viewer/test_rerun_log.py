"""`vlamix view --rrd`: the recordings of the bundled layout, read back with Rerun's own tools (`rerun rrd
verify`, `rerun rrd print`, and its Python reader) and compared with the shards and the frame Parquet."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from view_kit import View, built_views, episode_samples, index_rows, npy, recordings, shard_samples

from vlamix.schemas.embodiment import CAMERA_SLOTS
from vlamix.shards.workdir import WorkDir


@pytest.fixture(scope="session")
def views(bundled, tmp_path_factory) -> dict[str, View]:
    return built_views(bundled, tmp_path_factory)


def _rerun(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rerun_cli", *args], capture_output=True, text=True)


def _names(bundled, dataset: str, part: str) -> list[str]:
    manifest = json.loads((bundled / "manifest.json").read_text())
    spec = yaml.safe_load((bundled / manifest["datasets"][dataset]["embodiment_spec"]).read_text())
    return [d["name"] for d in spec[part]]


def test_every_kind_verifies_and_prints_its_entities(views, bundled):
    files = [str(v.rrd) for v in views.values()]
    done = _rerun("rrd", "verify", *files)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(files)} files verified without error" in done.stderr + done.stdout
    for kind, v in views.items():
        printed = _rerun("rrd", "print", str(v.rrd))
        assert printed.returncode == 0, printed.stderr[-2000:]
        expected = ["/text/prompt", "/text/target", "/episode", "/camera/base_0" if kind == "WD" else None]
        if kind != "WD":
            state, action = _names(bundled, v.dataset, "state"), _names(bundled, v.dataset, "action")
            expected += [
                f"/state/{state[0]}",
                f"/state_normalized/{state[-1]}",
                f"/action_normalized/{action[0]}",
            ]
            expected += [f"/action/{action[-1]}/native", f"/action/{action[-1]}/fast", "/text/subtask"]
        for path in filter(None, expected):
            assert f" - {path} - " in printed.stdout, (kind, path)
        recs = recordings(v.rrd)
        want = [f"{v.dataset}/episode_{e:06d}" for e in v.episodes] or [f"{v.dataset}/items"]
        assert sorted(recs) == sorted(want)
        assert v.summary["rrd"]["recordings"] == {
            r: len(index_rows(bundled, v.dataset))
            if kind == "WD"
            else sum(1 for row in index_rows(bundled, v.dataset) if row["episode"] == int(r[-6:]))
            for r in want
        }


def test_series_equal_the_shards_and_the_native_frames(views, bundled):
    """MM episode 1: every state series has one row per sample; the normalized series are the shard's
    values; the native ones are the frame Parquet's (the chain's inverses undo what ingest did); the
    cameras are the shard's JPEG bytes; the `time` timeline is each sample's timestamp."""
    v = views["MM"]
    rec = recordings(v.rrd)[f"{v.dataset}/episode_000001"]
    samples = episode_samples(bundled, v.dataset, 1)
    frames = np.array([f for f, _ in samples])
    state_norm = np.stack([npy(m, "state.npy") for _, m in samples])
    actions_norm = np.stack([npy(m, "actions.npy")[0] for _, m in samples])
    native = pq.read_table(bundled / WorkDir.frames(v.dataset, 1)).to_pydict()
    state_native, action_native = np.array(native["state"]), np.array(native["action"])

    for d, name in enumerate(_names(bundled, v.dataset, "state")):
        got_frames, values = rec.scalars(f"/state_normalized/{name}")
        assert len(got_frames) == len(samples)
        np.testing.assert_array_equal(got_frames, frames)
        np.testing.assert_array_equal(values, state_norm[:, d].astype(np.float64))  # exactly the shard's
        _, values = rec.scalars(f"/state/{name}")
        np.testing.assert_allclose(values, state_native[frames, d], atol=1e-5)
    for d, name in enumerate(_names(bundled, v.dataset, "action")):
        np.testing.assert_array_equal(rec.scalars(f"/action_normalized/{name}")[1], actions_norm[:, d])
        _, step0 = rec.scalars(f"/action/{name}/native")
        np.testing.assert_allclose(step0, action_native[frames, d], atol=1e-5)
        _, fast = rec.scalars(f"/action/{name}/fast")
        assert np.isfinite(fast).all()
        assert np.abs(fast - step0).max() < 0.1  # FAST is lossy, but not by much
        assert np.abs(fast - step0).max() > 0  # ... and it is the reconstruction, not a copy

    for slot in CAMERA_SLOTS:
        rows = rec.rows.get(f"/camera/{slot}", [])
        real = [m for _, m in samples if npy(m, "image_mask.npy")[CAMERA_SLOTS.index(slot)]]
        assert len(rows) == len(real)
        assert all(
            bytes(r["EncodedImage:blob"][0]) == m[f"{slot}.jpg"] for r, m in zip(rows, real, strict=True)
        )
    times = [r["time"].total_seconds() for r in rec.rows["/text/prompt"]]
    assert times == pytest.approx([json.loads(m["meta.json"])["timestamp"] for _, m in samples])
    assert rec.texts("/text/prompt") == {f: m["prompt.txt"].decode() for f, m in samples}
    doc = rec.static["/episode"][0]["TextDocument:text"][0]
    assert "- episode: 1" in doc and "- split: train" in doc and "- success: True" in doc
    assert f"- length: {len(native['frame'])} frames" in doc
    env = next((r.get("environment") for r in index_rows(bundled, v.dataset) if r["episode"] == 1), None)
    assert ("- environment:" not in doc) if env is None else (f"- environment: {env}\n" in doc)


def test_subtask_and_instruction_in_force(views, bundled):
    """At every frame of the MM episode where the HL (VI) dataset over it has a sample, the recording's
    subtask (instruction) is that sample's target (its prompt's task); between them, stride 2, the same
    text holds one frame on."""
    rec = recordings(views["MM"].rrd)["mobile_aloha_sim/episode_000001"]
    subtasks, instructions = rec.texts("/text/subtask"), rec.texts("/text/instruction")
    hl = {f: m["target.txt"].decode() for f, m in episode_samples(bundled, "mm_subtasks", 1)}
    vi = {f: m["prompt.txt"].decode() for f, m in episode_samples(bundled, "mm_verbal", 1)}
    assert hl and vi
    for f, text in hl.items():
        assert subtasks[f] == text
        if f + 1 in subtasks and f + 1 not in hl:
            assert subtasks[f + 1] == text
    for f, prompt in vi.items():
        assert prompt.startswith(f"Task: {instructions[f]}, Control: ")


def test_web_items_carry_image_and_turns(views, bundled):
    v = views["WD"]
    rec = recordings(v.rrd)[f"{v.dataset}/items"]
    manifest = json.loads((bundled / "manifest.json").read_text())
    samples = shard_samples(bundled, v.dataset)
    items = {json.loads(m["meta.json"])["item"]: m for m in samples.values()}
    rows = rec.rows["/camera/base_0"]
    assert [r["frame"] for r in rows] == sorted(items)
    assert all(bytes(r["EncodedImage:blob"][0]) == items[r["frame"]]["base_0.jpg"] for r in rows)
    turns = rec.texts("/text/turns")
    for item, m in items.items():
        for t in json.loads(m["turns.json"]):
            assert t["prompt"] in turns[item] and t["target"] in turns[item]
    assert manifest["datasets"][v.dataset]["kind"] == "WD" and "time" not in rows[0]
