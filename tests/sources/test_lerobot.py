from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLES, as_written

from vlamix.config import ConfigError
from vlamix.schemas.frame import FRAME
from vlamix.schemas.quarantine import BadRecord
from vlamix.sources.config import load_sources
from vlamix.sources.lerobot import _info, list_episodes, read_episode
from vlamix.sources.synthetic.lerobot_writer import LeRobotEpisode, write_lerobot
from vlamix.sources.synthetic.me_samples import generate_me, read_frame_code
from vlamix.transforms.image import ResizeWithPad, decode_jpeg, encode_jpeg

# the dims by the names of samples/embodiments/sim_arm6_30hz.yaml: the reader matches them by name
DIMS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper"]
NAMES = (DIMS, DIMS)


def _load(tmp_path, write_sources, path: str):
    _info.cache_clear()
    sources = load_sources(
        write_sources(
            tmp_path,
            f"datasets:\n  - {{name: me, kind: ME, format: lerobot, path: {path}, embodiment: {SAMPLES}/embodiments/sim_arm6_30hz.yaml}}\n",
        )
    )
    src = sources.datasets[0]
    return src, sources.embodiment(src), list_episodes(sources, src)


def _episodes(n: int = 2, t: int = 12, seed: int = 0, **over) -> list[LeRobotEpisode]:
    rng = np.random.default_rng(seed)
    eps = []
    for k in range(n):
        frames = [np.full((48, 64, 3), 20 * i % 250, np.uint8) for i in range(t)]
        eps.append(
            LeRobotEpisode(
                rng.normal(size=(t, 7)),
                rng.normal(size=(t, 7)),
                {"top": frames, "wrist": frames},
                f"task {k}",
            )
        )
    return eps


@pytest.mark.parametrize("name", ["lerobot_v21", "lerobot_v30"])
def test_frames_pair_with_the_right_video_frames(tmp_path, write_sources, name):
    """The samples carry each frame's index as a code in the picture: after lossy video (h264 / AV1),
    decoding, resize-with-pad and JPEG, every row still shows its own index."""
    src, emb, refs = _load(tmp_path, write_sources, str(SAMPLES / name))
    assert len(refs) == 3
    _, _, new_w, top, left = ResizeWithPad().geometry(96, 128)
    scale = new_w / 128
    for ref in refs:
        rows = as_written(read_episode(ref, src, emb))
        assert len(rows) == ref.frames
        FRAME.table(rows[:20])
        for row in rows[::7]:
            for slot in ("image_base_0", "image_left_wrist"):
                assert read_frame_code(decode_jpeg(row[slot]), top, left, scale) == row["frame"], (
                    ref.source_file,
                    slot,
                    row["frame"],
                )
        assert rows[0]["task"].startswith("put the ")
    parquet = sorted((SAMPLES / name / "data").rglob("*.parquet"))[0]
    table = pq.read_table(parquet)
    first = as_written(read_episode(refs[0], src, emb))[5]
    np.testing.assert_array_equal(
        np.asarray(first["state"], np.float32),
        np.asarray(table.column("observation.state")[5].as_py(), np.float32),
    )


def test_regenerating_gives_the_checked_in_files(tmp_path):
    for folder in generate_me(tmp_path):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            assert path.read_bytes() == (SAMPLES / path.relative_to(tmp_path)).read_bytes(), path


def test_v20_is_read_like_v21(tmp_path, write_sources):
    write_lerobot(tmp_path / "ds", "v2.1", _episodes(), 30, NAMES, codec="libx264")
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    (tmp_path / "ds/meta/info.json").write_text(json.dumps({**info, "codebase_version": "v2.0"}))
    (tmp_path / "ds/meta/episodes_stats.jsonl").unlink()
    src, emb, refs = _load(tmp_path, write_sources, "ds")
    rows = as_written(read_episode(refs[1], src, emb))
    assert len(rows) == 12 and rows[0]["task"] == "task 1"


def test_unknown_version_is_a_clear_error(tmp_path, write_sources):
    write_lerobot(tmp_path / "ds", "v2.1", _episodes(1), 30, NAMES, codec="libx264")
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    (tmp_path / "ds/meta/info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pytest.raises(ConfigError, match="codebase_version 'v1.6' is not one this reader knows"):
        _load(tmp_path, write_sources, "ds")


def test_video_shorter_than_parquet_is_quarantined(tmp_path, write_sources):
    write_lerobot(tmp_path / "ds", "v2.1", _episodes(1, t=12), 30, NAMES, codec="libx264")
    short = _episodes(1, t=8)
    write_lerobot(tmp_path / "short", "v2.1", short, 30, NAMES, codec="libx264")
    video = "videos/chunk-000/observation.images.wrist/episode_000000.mp4"
    shutil.copyfile(tmp_path / "short" / video, tmp_path / "ds" / video)
    src, emb, refs = _load(tmp_path, write_sources, "ds")
    with pytest.raises(BadRecord, match="video shorter than its parquet") as info:
        as_written(read_episode(refs[0], src, emb))
    rec = info.value.record
    assert (rec.field, rec.frame, rec.source_file) == ("observation.images.wrist", 8, "ds#episode_000000")


def test_nan_and_wrong_width(tmp_path, write_sources):
    eps = _episodes(1)
    eps[0].action[3, 2] = np.nan
    write_lerobot(tmp_path / "ds", "v3.0", eps, 30, NAMES, codec="libx264")
    src, emb, refs = _load(tmp_path, write_sources, "ds")
    with pytest.raises(BadRecord, match="non-finite") as info:
        as_written(read_episode(refs[0], src, emb))
    assert (info.value.record.field, info.value.record.frame) == ("action", 3)


def test_image_features_stored_in_parquet(tmp_path, write_sources):
    write_lerobot(tmp_path / "ds", "v2.1", _episodes(1), 30, NAMES, codec="libx264")
    path = tmp_path / "ds/data/chunk-000/episode_000000.parquet"
    table = pq.read_table(path)
    cells = [
        {"bytes": encode_jpeg(np.full((40, 40, 3), 10 * i, np.uint8)), "path": f"frame_{i}.jpg"}
        for i in range(table.num_rows)
    ]
    pq.write_table(table.append_column("observation.images.top", pa.array(cells)), path)
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    info["features"]["observation.images.top"] = {
        "dtype": "image",
        "shape": [40, 40, 3],
        "names": ["height", "width", "channels"],
    }
    (tmp_path / "ds/meta/info.json").write_text(json.dumps(info))
    src, emb, refs = _load(tmp_path, write_sources, "ds")
    rows = as_written(read_episode(refs[0], src, emb))
    assert abs(decode_jpeg(rows[6]["image_base_0"])[112, 112].mean() - 60) < 4
