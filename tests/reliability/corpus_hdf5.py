"""Bad (and odd but good) Mobile-ALOHA HDF5 episodes: each case writes one small episode file with the
synthetic writer the bundled samples come from, then breaks it in one way."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
from corpus_kit import Case, Data, Format, Quarantined, bomb_jpeg, flip, truncate

__all__ = ["CASES", "FORMAT", "FPS", "FRAMES"]

FRAMES = 10
FPS = 50.0  # mobile_aloha's control rate
_SIZE = (32, 48)
_CAMS = "/observations/images"


def _episode(path: Path, seed: int, frames: int = FRAMES, compress: bool = True, mutate=None) -> Path:
    from vlamix.sources.synthetic.mobile_aloha import SampleSpec, write_episode
    from vlamix.sources.synthetic.scenario import simulate

    state = simulate(seed % 1000)
    cut = slice(200 + seed % 50, 200 + seed % 50 + frames)
    fields = ("action", "qpos", "qvel", "base_action", "base_pose", "cubes")
    short = dataclasses.replace(state, **{k: getattr(state, k)[cut] for k in fields})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_episode(path, short, SampleSpec(compress=compress, height=_SIZE[0], width=_SIZE[1]))
    if mutate is not None:
        with h5py.File(path, "r+") as f:
            mutate(f)
    return path


def _replace(f: h5py.File, key: str, data: np.ndarray, **kw) -> None:
    del f[key]
    f.create_dataset(key, data=data, track_times=False, **kw)


def _set(key: str, row: int, col: int, value: float) -> Callable:
    def mutate(f: h5py.File) -> None:
        data = f[key][()]
        data[row, col] = value
        _replace(f, key, data)

    return mutate


def _rows(key: str, keep: int) -> Callable:
    return lambda f: _replace(f, key, f[key][()][:keep])


def _cols(key: str, keep: int) -> Callable:
    return lambda f: _replace(f, key, f[key][()][:, :keep])


def _frame_bytes(camera: str, frame: int, data: bytes) -> Callable:
    """Put `data` as JPEG row `frame` of a compressed camera (re-padded if it is longer)."""

    def mutate(f: h5py.File) -> None:
        rows = f[f"{_CAMS}/{camera}"][()]
        out = np.zeros((len(rows), max(rows.shape[1], len(data))), np.uint8)
        out[:, : rows.shape[1]] = rows
        out[frame] = 0
        out[frame, : len(data)] = np.frombuffer(data, np.uint8)
        _replace(f, f"{_CAMS}/{camera}", out)

    return mutate


def _declared(key: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype=np.float64) -> Callable:
    """A gzip dataset declaring `shape` but never written: a few bytes on disk, gigabytes when read."""

    def mutate(f: h5py.File) -> None:
        del f[key]
        f.create_dataset(key, shape=shape, chunks=chunks, dtype=dtype, compression="gzip", track_times=False)

    return mutate


def _corrupt_chunk(camera: str, frame: int) -> Callable[[Path], None]:
    """Invert bytes in the middle of one frame's gzip chunk on disk (zlib's checksum then fails)."""

    def write(path: Path) -> None:
        with h5py.File(path) as f:
            info = f[f"{_CAMS}/{camera}"].id.get_chunk_info(frame)
        path.write_bytes(flip(path.read_bytes(), info.byte_offset + info.size // 2))

    return write


def _then(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        for step in steps:
            step(path)

    return write


def _one_frame(rows: list[dict]) -> None:
    assert len(rows) == 1 and rows[0]["frame"] == 0


def _no_left_wrist(rows: list[dict]) -> None:
    assert all(r["image_left_wrist"] is None for r in rows)  # a masked slot, not an error
    assert all(r["image_base_0"] is not None for r in rows)


def _case(name: str, expect, mutate=None, after=None, **episode) -> Case:
    def make(path: Path) -> None:
        _episode(path, zlib.crc32(name.encode()), mutate=mutate, **episode)
        if after is not None:
            after(path)

    return Case(name, "aloha_hdf5", make, expect)


def _raw_bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


CASES = [
    _case("hdf5_truncated", Quarantined("cannot open as HDF5"), after=truncate),
    _case(
        "hdf5_not_hdf5", Quarantined("cannot open as HDF5"), after=_raw_bytes(b"\x89HDF\r\n\x1a\n garbage")
    ),
    _case(
        "hdf5_corrupt_chunk",
        Quarantined(f"frame 3 of {_CAMS}/cam_left_wrist does not read", f"{_CAMS}/cam_left_wrist", 3),
        after=_corrupt_chunk("cam_left_wrist", 3),
    ),
    _case(
        "hdf5_nan_qpos", Quarantined("non-finite", "state", 4), mutate=_set("observations/qpos", 4, 2, np.nan)
    ),
    _case("hdf5_inf_action", Quarantined("non-finite", "action", 6), mutate=_set("action", 6, 1, np.inf)),
    _case(
        "hdf5_action_rows_short",
        Quarantined(r"/action has 7 rows, /observations/qpos has 10: fields that disagree", "/action"),
        mutate=_rows("action", 7),
    ),
    _case(
        "hdf5_camera_frames_short",
        Quarantined("camera cam_high has 9 frames, the episode has 10", f"{_CAMS}/cam_high"),
        mutate=_rows(f"{_CAMS}/cam_high", 9),
    ),
    _case(
        "hdf5_qpos_width",
        Quarantined("state has 13 columns .* says 14", "state"),
        mutate=_cols("observations/qpos", 13),
    ),
    _case(
        "hdf5_no_qpos",
        Quarantined("no dataset /observations/qpos", "/observations/qpos"),
        mutate=lambda f: f.__delitem__("observations/qpos"),
    ),
    _case(
        "hdf5_jpeg_undecodable",
        Quarantined("JPEG does not decode", "image_left_wrist", 3),
        mutate=_frame_bytes("cam_left_wrist", 3, b"\xff\xd8\xff\xe0" + b"\x07" * 200),
    ),
    _case(
        "hdf5_jpeg_bomb",
        Quarantined("above the cap of 50 MP", "image_base_0", 2),
        mutate=_frame_bytes("cam_high", 2, bomb_jpeg()),
    ),
    _case(
        "hdf5_raw_frames_bomb",
        Quarantined(
            "camera cam_right_wrist declares 30000x30000 frames .* above the cap", f"{_CAMS}/cam_right_wrist"
        ),
        mutate=_declared(f"{_CAMS}/cam_right_wrist", (FRAMES, 30000, 30000, 3), (1, 500, 500, 3), np.uint8),
        compress=False,
    ),
    _case(
        "hdf5_declared_steps_bomb",
        Quarantined("/observations/qpos declares 2,000,000,000 steps, above the cap", "/observations/qpos"),
        mutate=_declared("observations/qpos", (2_000_000_000, 14), (100_000, 14)),
    ),
    _case(
        "hdf5_non_utf8_instruction",
        Quarantined("instruction 'task' is not UTF-8", "task"),  # one text for the episode: no frame
        mutate=lambda f: f.attrs.__setitem__("task", np.bytes_(b"put the \xff\xfe cube away")),
    ),
    _case(  # finite, so the reader keeps it; 100 rad is outside the declared range: the frame gate's
        "hdf5_qpos_out_of_range",
        Quarantined(
            r"^quality gate: expect_column_values_to_be_between failed on state\.left_forearm_roll",
            "state.left_forearm_roll",
            7,
        ),
        mutate=_set("observations/qpos", 7, 3, 100.0),
    ),
    _case("data_single_frame", Data(_one_frame), frames=1),
    _case(
        "data_camera_missing_here",
        Data(_no_left_wrist),
        mutate=lambda f: f.__delitem__(f"{_CAMS}/cam_left_wrist"),
    ),
]


def write(root: Path, rel: str, cases: list[Case], goods: int) -> dict[str, str]:
    out = {}
    for k in range(goods):
        _episode(root / rel / f"good_{k}.hdf5", 100 + 7 * k)
        out[f"good_{k}"] = f"{rel}/good_{k}.hdf5"
    for case in cases:
        case.make(root / rel / f"{case.name}.hdf5")
        out[case.name] = f"{rel}/{case.name}.hdf5"
    return out


def entry(name: str, rel: str, robot: str | None = None) -> str:
    return (
        f"{{name: {name}, kind: MM, format: aloha_hdf5, path: {rel}, embodiment: mobile_aloha, "
        "task: tidy up, keys: {instruction: task}}"
    )


FORMAT = Format("aloha_hdf5", write, entry)
