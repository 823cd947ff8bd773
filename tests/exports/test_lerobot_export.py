"""`vlamix export lerobot` on the bundled layout, read back three ways: by vlamix's own `lerobot` reader
(native state and action equal to the layout's frames, images within a stated tolerance, accounting equal),
by plain pyarrow and PyAV with no vlamix code (info.json says what the files hold), and by Hugging Face
`datasets` (the language columns carry LeRobot's feature types)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REPO, as_written

from vlamix.exports.layout_source import open_layout
from vlamix.schemas.image_codec import decode_jpeg
from vlamix.sources.config import load_sources
from vlamix.sources.lerobot import _info, list_episodes, read_episode

pytestmark = pytest.mark.slow

# mobile_aloha_sim: MM, 3 cameras, HL and VI annotations; robomimic_sim: a val split; umi_sim: a rotation
# group (rotation vectors trained as Euler angles); gr00t_sim: LeRobot with modality.json, read back again.
# All with --gr00t (test_export_options.py: AV1, the subtask-index form, S3, resuming).
EXPORTED = ("mobile_aloha_sim", "robomimic_sim", "umi_sim", "gr00t_sim")
# Mean absolute pixel error of a decoded export frame against the layout's own JPEG (0-255): h264 at crf 23,
# then our reader's resize and JPEG; README "Export" states it.
PIXEL_TOLERANCE = 4.0


def vlamix(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vlamix.cli", *args], capture_output=True, text=True, cwd=REPO
    )


@pytest.fixture(scope="module")
def exported(bundled, tmp_path_factory) -> Path:
    to = tmp_path_factory.mktemp("export")
    names = [a for n in EXPORTED for a in ("--dataset", n)]
    done = vlamix("export", "lerobot", str(bundled), *names, "--to", str(to), "--gr00t", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert sorted(summary["datasets"]) == sorted(EXPORTED)
    return to


def _layout_frames(bundled: Path, name: str) -> list:
    data = open_layout(bundled).robot(name)
    return [(ep, data.frames(ep).to_pylist()) for ep in data.episodes]


@pytest.mark.parametrize("name", EXPORTED)
def test_our_lerobot_reader_reads_the_export_back(bundled, exported, tmp_path, write_sources, name):
    manifest = json.loads((bundled / "manifest.json").read_text())
    spec = exported / name / "meta/vlamix_embodiment.yaml"  # the layout's, in the trained rotations
    _info.cache_clear()
    sources = load_sources(
        write_sources(
            tmp_path,
            f"datasets:\n  - {{name: back, kind: ME, format: lerobot, path: {exported / name}, embodiment: {spec}}}\n",
        )
    )
    src = sources.datasets[0]
    emb = sources.embodiment(src)
    refs = list_episodes(sources, src)
    layout = _layout_frames(bundled, name)
    assert len(refs) == len(layout) == manifest["datasets"][name]["accounting"]["written"]
    # mobile_aloha_sim: its first episode only (650 frames of 3 cameras to decode; the others cover the rest)
    pairs = list(zip(refs, layout, strict=True))[: 1 if name == "mobile_aloha_sim" else None]
    for ref, (ep, frames) in pairs:
        rows = as_written(read_episode(ref, src, emb))
        assert len(rows) == len(frames) == ep.frames
        got_state = np.asarray([r["state"] for r in rows], np.float32)
        got_action = np.asarray([r["action"] for r in rows], np.float32)
        np.testing.assert_array_equal(got_state, np.asarray([f["state"] for f in frames], np.float32))
        np.testing.assert_array_equal(got_action, np.asarray([f["action"] for f in frames], np.float32))
        assert [r["task"] for r in rows] == [f["task"] for f in frames]
        for slot in ("base_0", "left_wrist", "right_wrist", "base_1"):
            column = f"image_{slot}"
            if frames[0][column] is None:
                assert rows[0][column] is None
                continue
            for k in range(0, len(frames), max(1, len(frames) // 7)):  # a spread of frames
                ours = decode_jpeg(rows[k][column]).astype(np.float64)
                theirs = decode_jpeg(frames[k][column]).astype(np.float64)
                assert np.abs(ours - theirs).mean() < PIXEL_TOLERANCE, (name, ref.record, slot, k)


@pytest.mark.parametrize("name", EXPORTED)
def test_plain_pyarrow_and_pyav_see_what_info_json_says(exported, name):
    """No vlamix code: frame counts per video equal the parquet rows, fps, shapes, episode ranges."""
    root = exported / name
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert data.num_rows == info["total_frames"] == sum(e["length"] for e in episodes)
    assert len(episodes) == info["total_episodes"]
    assert pq.read_table(root / "meta/tasks.parquet").num_rows == info["total_tasks"]
    for key in ("observation.state", "action"):
        assert data.schema.field(key).type.list_size == info["features"][key]["shape"][0]
        assert len(info["features"][key]["names"]) == info["features"][key]["shape"][0]
    assert data.column("index").to_pylist() == list(range(data.num_rows))
    videos = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    assert videos
    for key in videos:
        feature = info["features"][key]
        with av.open(str(root / f"videos/{key}/chunk-000/file-000.mp4")) as c:
            stream = c.streams.video[0]
            frames = list(c.decode(stream))
            assert len(frames) == data.num_rows
            assert stream.average_rate == feature["info"]["video.fps"] == info["fps"]
            assert [stream.height, stream.width, 3] == feature["shape"]
            assert stream.codec_context.name == feature["info"]["video.codec"]
            times = [round(float(f.time) * info["fps"]) for f in frames]
            assert times == list(range(data.num_rows))  # frame k of the file at k / fps
    for e in episodes:
        for key in videos:
            assert e[f"videos/{key}/from_timestamp"] * info["fps"] == pytest.approx(e["dataset_from_index"])
    split_total = sum(int(r.split(":")[1]) - int(r.split(":")[0]) for r in info["splits"].values())
    assert split_total == info["total_episodes"]
    for split, span in info["splits"].items():
        lo, hi = map(int, span.split(":"))
        assert {e["split"] for e in episodes[lo:hi]} == {split}


@pytest.mark.parametrize("name", EXPORTED)
def test_stats_json_is_exact_over_the_exported_frames(exported, name):
    root = exported / name
    stats = json.loads((root / "meta/stats.json").read_text())
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    for key in ("observation.state", "action"):
        x = np.asarray(data.column(key).to_pylist(), np.float32).astype(np.float64)
        s = stats[key]
        assert s["count"] == [len(x)]
        np.testing.assert_allclose(s["mean"], x.mean(0), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(s["std"], x.std(0), rtol=1e-5, atol=1e-7)
        for q in (1, 10, 50, 90, 99):  # numpy's linear quantiles, rounded to float32 as the layout's
            np.testing.assert_array_equal(s[f"q{q:02d}"], np.percentile(x, q, axis=0).astype(np.float32))
        np.testing.assert_array_equal(s["min"], x.min(0).astype(np.float32))
    images = [k for k in stats if k.startswith("observation.images.")]
    assert images
    for key in images:
        assert np.asarray(stats[key]["mean"]).shape == (3, 1, 1)
        assert 0.0 <= np.min(stats[key]["min"]) <= np.max(stats[key]["max"]) <= 1.0


def test_subtasks_and_instructions_are_lerobot_language_columns(bundled, exported, tmp_path, monkeypatch):
    """HL spans: a persistent `subtask` row per span, stamped with its start, on every frame (LeRobot's
    `active_at` gives the one in force); VI spans: an `interjection` event on the span's first frame."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    root = exported / "mobile_aloha_sim"
    info = json.loads((root / "meta/info.json").read_text())
    for key in ("language_persistent", "language_events"):
        assert info["features"][key] == {"dtype": "language", "shape": [1], "names": None}
    ds = datasets.Dataset.from_parquet(
        str(root / "data/chunk-000/file-000.parquet"), cache_dir=str(tmp_path / "hf")
    )
    row_fields = ds.features["language_persistent"].feature
    assert set(row_fields) == {"role", "content", "style", "timestamp", "camera", "tool_calls"}
    assert type(row_fields["tool_calls"].feature).__name__ == "Json"
    data = open_layout(bundled).robot("mobile_aloha_sim")
    table = pq.read_table(root / "data/chunk-000/file-000.parquet").to_pylist()
    fps = info["fps"]
    for pos, ep in enumerate(data.episodes):
        rows = [r for r in table if r["episode_index"] == pos]
        hl, vi = data.spans["HL"][ep.episode], data.spans["VI"][ep.episode]
        persistent = rows[0]["language_persistent"]
        assert all(r["language_persistent"] == persistent for r in rows)
        assert [(p["style"], p["role"], p["content"]) for p in persistent] == [
            ("subtask", "assistant", s.text) for s in hl
        ]
        for s in hl:
            f = s.start + (s.end - s.start) // 2
            t = rows[f]["timestamp"]
            active = max((p for p in persistent if p["timestamp"] <= t), key=lambda p: p["timestamp"])
            assert active["content"] == s.text
        events = {f: r["language_events"] for f, r in enumerate(rows) if r["language_events"]}
        assert events == {
            s.start: [
                {
                    "role": "user",
                    "content": s.text,
                    "style": "interjection",
                    "camera": None,
                    "tool_calls": None,
                }
            ]
            for s in vi
        }
        assert rows[-1]["timestamp"] == pytest.approx((len(rows) - 1) / fps)


@pytest.mark.parametrize("name", EXPORTED)
def test_gr00t_modality_covers_every_dim_once_by_the_embodiments_names(exported, name):
    import itertools

    from vlamix.schemas.embodiment import embodiment_from_text

    root = exported / name
    modality = json.loads((root / "meta/modality.json").read_text())
    emb = embodiment_from_text((root / "meta/vlamix_embodiment.yaml").read_text(), "spec")
    for part, dims in (("state", emb.state), ("action", emb.action)):
        ranges = sorted((p["start"], p["end"]) for p in modality[part].values())
        assert ranges[0][0] == 0 and ranges[-1][1] == len(dims)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))  # contiguous, no overlap
        names = {d.name for d in dims}
        for part_name, r in modality[part].items():  # a one-dim part is named after its dim
            if r["end"] - r["start"] == 1 and "rotation_type" not in r:
                assert part_name in names
    info = json.loads((root / "meta/info.json").read_text())
    videos = {k for k, f in info["features"].items() if f["dtype"] == "video"}
    assert {v["original_key"] for v in modality["video"].values()} == videos
    if emb.groups:  # umi_sim: the Euler angles are one part with GR00T's rotation type
        assert [r.get("rotation_type") for r in modality["state"].values() if "rotation_type" in r] == [
            "euler_angles_rpy"
        ]
