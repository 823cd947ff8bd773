"""Bad (and odd but good) LeRobot episodes, v2.1 and v3.0: the dataset is written with the synthetic
LeRobot writer (h264, tiny frames), then each case edits its own episode's data, files or metadata.

v2.1 datasets carry a third camera stored as images in the parquet (`observation.images.side`), so the
image-in-parquet path is exercised too. v3.0 datasets get one data file per episode (the writer
concatenates them), so a case can break its episode's file alone."""

from __future__ import annotations

import dataclasses
import functools
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from corpus_kit import Case, Data, Format, Quarantined, bomb_png, flip, jpeg, smooth, truncate

__all__ = ["CASES", "FORMAT_V21", "FORMAT_V30"]

FRAMES, FPS, DIMS = 8, 30, 7
_DIM_NAMES = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper"]
_NAMES = (_DIM_NAMES, _DIM_NAMES)  # the spec's dim names: the reader matches dims by name
FALLBACK_TASK = "do the corpus task"  # the entry's `task:`, for frames whose dataset gives none
_EMBODIMENT = Path(__file__).resolve().parents[2] / "samples" / "embodiments" / "sim_arm6_30hz.yaml"
SIDE = "observation.images.side"


@dataclass(frozen=True)
class Edit:
    """A LeRobot case: `episode` changes the episode before it is written, `files(root, e)` breaks
    episode `e`'s files after."""

    episode: Callable | None = None
    files: Callable[[Path, int], None] | None = None


def _episode(seed: int, task: str):
    from vlamix.sources.synthetic.lerobot_writer import LeRobotEpisode

    frames = [np.full((32, 32, 3), (seed * 37 + 20 * i) % 250, np.uint8) for i in range(FRAMES)]
    return LeRobotEpisode(
        smooth(FRAMES, DIMS, seed), smooth(FRAMES, DIMS, seed + 1), {"top": frames, "wrist": frames}, task
    )


def _data(root: Path, e: int) -> Path:
    if (root / "meta/tasks.jsonl").exists():  # v2.1
        return root / f"data/chunk-000/episode_{e:06d}.parquet"
    return root / f"data/chunk-000/file-{e:03d}.parquet"  # v3.0, split by _split_v30


def _video(root: Path, e: int, cam: str) -> Path:
    return root / f"videos/chunk-000/observation.images.{cam}/episode_{e:06d}.mp4"


def _edit_table(root: Path, e: int, change: Callable[[pa.Table], pa.Table]) -> None:
    path = _data(root, e)
    pq.write_table(change(pq.read_table(path)), path)


def _set(column: str, row: int, col: int, value: float) -> Callable:
    def change(ep):
        arr = getattr(ep, column).copy()
        arr[row, col] = value
        return dataclasses.replace(ep, **{column: arr})

    return change


def _side_cells(seed: int, n: int) -> list[dict]:
    return [{"bytes": jpeg(40 + 10 * i, seed=seed + i), "path": f"frame_{i}.jpg"} for i in range(n)]


def _with_side(root: Path, seeds: list[int]) -> None:
    """Add the image-in-parquet camera to every episode and to meta/info.json."""
    for e, seed in enumerate(seeds):
        _edit_table(root, e, lambda t, s=seed: t.append_column(SIDE, pa.array(_side_cells(s, t.num_rows))))
    info = json.loads((root / "meta/info.json").read_text())
    info["features"][SIDE] = {
        "dtype": "image",
        "shape": [32, 32, 3],
        "names": ["height", "width", "channels"],
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))


def _side_cell(frame: int, data: bytes) -> Callable[[Path, int], None]:
    def files(root: Path, e: int) -> None:
        def change(t: pa.Table) -> pa.Table:
            cells = t.column(SIDE).to_pylist()
            cells[frame] = {"bytes": data, "path": "bad.png"}
            return t.set_column(t.schema.get_field_index(SIDE), SIDE, pa.array(cells))

        _edit_table(root, e, change)

    return files


def _ragged_state(row: int) -> Callable[[Path, int], None]:
    def change(t: pa.Table) -> pa.Table:
        state = t.column("observation.state").to_pylist()
        state[row] = state[row][:-1]
        i = t.schema.get_field_index("observation.state")
        return t.set_column(i, "observation.state", pa.array(state, pa.list_(pa.float32())))

    return lambda root, e: _edit_table(root, e, change)


def _narrow_state(root: Path, e: int) -> None:
    def change(t: pa.Table) -> pa.Table:
        state = [row[:6] for row in t.column("observation.state").to_pylist()]
        i = t.schema.get_field_index("observation.state")
        return t.set_column(i, "observation.state", pa.array(state, pa.list_(pa.float32())))

    _edit_table(root, e, change)


def _drop_rows(n: int) -> Callable[[Path, int], None]:
    return lambda root, e: _edit_table(root, e, lambda t: t.slice(0, t.num_rows - n))


def _corrupt_page(root: Path, e: int) -> None:
    """Invert the page header of the first column chunk: the footer is intact, the page is not."""
    path = _data(root, e)
    offset = pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset
    path.write_bytes(flip(path.read_bytes(), offset))


def _corrupt_box(box: bytes, at: int) -> Callable[[Path, int], None]:
    """Invert 16 bytes `at` bytes into the first mp4 box of type `box` of the top camera's video."""

    def files(root: Path, e: int) -> None:
        path = _video(root, e, "top")
        data = path.read_bytes()
        path.write_bytes(flip(data, data.index(box) - 4 + at, 16))

    return files


def _short_video(frames: int) -> Callable[[Path, int], None]:
    def files(root: Path, e: int) -> None:
        from vlamix.sources.synthetic.lerobot_writer import _encode

        _encode(_video(root, e, "wrist"), _episode(e, "").videos["wrist"][:frames], FPS, "libx264")

    return files


def _huge_frame_header_video(root: Path, e: int) -> None:
    """An MJPEG mp4 whose every frame header (SOF0) claims 30000x30000."""
    path = _video(root, e, "top")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuvj420p"
        for i in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 20 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data, at = bytearray(path.read_bytes()), 0
    while (at := data.find(b"\xff\xc0", at)) >= 0:
        data[at + 5 : at + 9] = struct.pack(">HH", 30000, 30000)
        at += 2
    path.write_bytes(bytes(data))


def _non_utf8_task(root: Path, e: int) -> None:
    path = root / "meta/tasks.jsonl"
    lines = path.read_bytes().splitlines()
    lines[e] = lines[e].replace(b'"task": "', b'"task": "\xff\xfe ')  # task index e: one task per episode
    path.write_bytes(b"\n".join(lines) + b"\n")


def _task_is_the_fallback(rows: list[dict]) -> None:
    assert all(r["task"] == FALLBACK_TASK for r in rows)


def _v21(name: str, expect, episode=None, files=None) -> Case:
    return Case(name, "lerobot_v21", Edit(episode, files), expect)


def _v30(name: str, expect, episode=None, files=None) -> Case:
    return Case(name, "lerobot_v30", Edit(episode, files), expect)


_TOP, _WRIST = "observation.images.top", "observation.images.wrist"
CASES = [
    _v21(
        "v21_parquet_truncated",
        Quarantined(r"episode_\d+\.parquet does not read as parquet"),
        files=lambda r, e: truncate(_data(r, e)),
    ),
    _v21(
        "v21_parquet_corrupt_page",
        Quarantined("does not read as parquet: .*page header"),
        files=_corrupt_page,
    ),
    _v21("v21_nan_action", Quarantined("non-finite", "action", 3), episode=_set("action", 3, 2, np.nan)),
    _v21(
        "v21_state_width",
        Quarantined("state has 6 columns .* says 7", "state"),
        files=_narrow_state,  # the data alone: info.json still says 7 named dims
    ),
    _v21(
        "v21_ragged_state",
        Quarantined("column 'observation.state' row 4 holds 6 values, row 0 holds 7", "observation.state", 4),
        files=_ragged_state(4),
    ),
    _v21(
        "v21_mp4_truncated",
        Quarantined(r"video episode_\d+\.mp4 does not decode", _TOP),
        files=lambda r, e: truncate(_video(r, e, "top")),
    ),
    _v21("v21_mp4_corrupt_index", Quarantined("has no video stream", _TOP), files=_corrupt_box(b"moov", 8)),
    _v21("v21_mp4_corrupt_frames", Quarantined("does not decode", _TOP), files=_corrupt_box(b"mdat", 8)),
    _v21("v21_video_huge_frame_header", Quarantined("does not decode", _TOP), files=_huge_frame_header_video),
    _v21("v21_video_short", Quarantined("video shorter than its parquet", _WRIST, 5), files=_short_video(5)),
    _v21(
        "v21_video_missing",
        Quarantined(r"video file .*episode_\d+\.mp4 is missing", _WRIST),
        files=lambda r, e: _video(r, e, "wrist").unlink(),
    ),
    _v21(
        "v21_task_not_utf8",
        Quarantined(r"the text of task_index \d+ in meta/tasks.jsonl is not UTF-8", "task", 0),
        files=_non_utf8_task,
    ),
    _v21(
        "v21_parquet_image_bomb",
        Quarantined("above the cap of 50 MP", SIDE, 2),
        files=_side_cell(2, bomb_png()),
    ),
    _v21(
        "v21_parquet_image_undecodable",
        Quarantined("image does not decode", SIDE, 1),
        files=_side_cell(1, b"\x89PNG\r\n\x1a\n not really"),
    ),
    _v21(
        "data_v21_empty_task",
        Data(_task_is_the_fallback),
        episode=lambda ep: dataclasses.replace(ep, task=""),
    ),
    _v30(
        "v30_parquet_truncated",
        Quarantined(r"file-\d+\.parquet does not read as parquet"),
        files=lambda r, e: truncate(_data(r, e)),
    ),
    _v30("v30_nan_action", Quarantined("non-finite", "action", 5), episode=_set("action", 5, 0, np.nan)),
    _v30(
        "v30_rows_fewer_than_meta",
        Quarantined("the parquet holds 6 rows, meta says the episode has 8", "length"),
        files=_drop_rows(2),
    ),
    _v30(
        "v30_parquet_missing",
        Quarantined(r"file-\d+\.parquet is missing"),
        files=lambda r, e: _data(r, e).unlink(),
    ),
]


def _split_v30(root: Path, n: int) -> None:
    """One data file per episode (file-<e>.parquet), as a v3.0 dataset may hold them."""
    path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    for e in range(n):
        part = table.filter(pc.equal(table.column("episode_index"), e))
        pq.write_table(part, root / f"data/chunk-000/file-{e:03d}.parquet")
    meta = root / "meta/episodes/chunk-000/file-000.parquet"
    t = pq.read_table(meta)
    i = t.schema.get_field_index("data/file_index")
    pq.write_table(t.set_column(i, "data/file_index", pa.array(range(n), pa.int64())), meta)


def _write(version: str, root: Path, rel: str, cases: list[Case], goods: int) -> dict[str, str]:
    from vlamix.sources.synthetic.lerobot_writer import write_lerobot

    names = [f"good_{k}" for k in range(goods)] + [c.name for c in cases]
    seeds = [zlib.crc32(n.encode()) % 10_000 for n in names]
    episodes = [_episode(s, f"task of {n}") for s, n in zip(seeds, names, strict=True)]
    for k, case in enumerate(cases, start=goods):
        if case.make.episode is not None:
            episodes[k] = case.make.episode(episodes[k])
    folder = root / rel
    write_lerobot(folder, version, episodes, FPS, _NAMES, codec="libx264")
    if version == "v3.0":
        _split_v30(folder, len(episodes))
    else:
        _with_side(folder, seeds)
    for k, case in enumerate(cases, start=goods):
        if case.make.files is not None:
            case.make.files(folder, k)
    return {n: f"{rel}#episode_{e:06d}" for e, n in enumerate(names)}


def _entry(name: str, rel: str, robot: str | None = None) -> str:
    return (
        f"{{name: {name}, kind: ME, format: lerobot, path: {rel}, embodiment: {_EMBODIMENT}, "
        f"task: {FALLBACK_TASK}, keys: {{cameras: {{side: base_1}}}}}}"
    )


FORMAT_V21 = Format("lerobot_v21", functools.partial(_write, "v2.1"), _entry)
FORMAT_V30 = Format("lerobot_v30", functools.partial(_write, "v3.0"), _entry)
