"""Bad (and odd but good) RLDS episodes (BridgeData's layout, widowx_bridge): each case is one TFRecord
file `<case>-train.tfrecord-00000-of-00001` beside the dataset's features.json, written with the same
Example encoder and record framing as the bundled samples, then broken in one way."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from corpus_kit import Case, Data, Format, Quarantined, bomb_jpeg, bomb_png, flip, jpeg, smooth
from PIL import Image

__all__ = ["CASES", "FORMAT"]

STEPS, DIMS = 6, 7


def _features():
    from vlamix.sources.synthetic.rlds_writer import RldsFeature

    return [
        RldsFeature("steps/observation/state", "Tensor", "float32", (DIMS,)),
        RldsFeature("steps/action", "Tensor", "float32", (DIMS,)),
        RldsFeature("steps/observation/image_0", "Image", shape=(32, 32, 3)),
        RldsFeature("steps/observation/image_2", "Image", shape=(32, 32, 3)),  # the spec maps it to null
        RldsFeature("steps/observation/image_3", "Image", shape=(32, 32, 3)),
        RldsFeature("steps/language_instruction", "Text"),
        RldsFeature("steps/is_first", "Scalar", "bool"),
    ]


def _episode(seed: int) -> dict:
    return {
        "steps/observation/state": smooth(STEPS, DIMS, seed),
        "steps/action": smooth(STEPS, DIMS, seed + 1, 0.05),
        "steps/observation/image_0": [jpeg(60 + 10 * i, seed=seed + i) for i in range(STEPS)],
        "steps/observation/image_2": [jpeg(200, seed=seed)] * STEPS,
        "steps/observation/image_3": [jpeg(120 + 5 * i, seed=seed + 3 * i) for i in range(STEPS)],
        "steps/language_instruction": ["put the spoon in the pot"] * STEPS,
        "steps/is_first": np.array([1] + [0] * (STEPS - 1)),
    }


def _record(ep: dict) -> bytes:
    from vlamix.sources.tf_example import encode_example

    flat = {
        k: [x.encode() if isinstance(x, str) else x for x in v]
        if isinstance(v, list)
        else np.asarray(v).ravel()
        for k, v in ep.items()
    }
    return encode_example(flat)


@dataclass(frozen=True)
class Edit:
    """An RLDS case: `episode` changes the episode's features, `record` its serialized bytes, `file` the
    framed TFRecord file."""

    episode: Callable[[dict], dict] | None = None
    record: Callable[[bytes], bytes] | None = None
    file: Callable[[bytes], bytes] | None = None


def _write_case(path: Path, seed: int, edit: Edit) -> None:
    from vlamix.sources.tfrecord import write_records

    ep = _episode(seed)
    if edit.episode is not None:
        ep = edit.episode(ep)
    record = _record(ep)
    if edit.record is not None:
        record = edit.record(record)
    write_records(path, [record])
    if edit.file is not None:
        path.write_bytes(edit.file(path.read_bytes()))


def _set(key: str, row: int, col: int, value: float) -> Callable[[dict], dict]:
    def change(ep: dict) -> dict:
        arr = ep[key].copy()
        arr[row, col] = value
        return {**ep, key: arr}

    return change


def _frame(key: str, step: int, data: bytes) -> Callable[[dict], dict]:
    def change(ep: dict) -> dict:
        frames = list(ep[key])
        frames[step] = data
        return {**ep, key: frames}

    return change


def _steps(key: str, keep: int) -> Callable[[dict], dict]:
    return lambda ep: {**ep, key: ep[key][:keep]}


def _black_wrist(ep: dict) -> dict:
    """An absent wrist camera, as Bridge records it: all-black frames and `has_image_3` false (without the
    flag, black frames are a dark camera: data, kept)."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buf, "JPEG")
    return {
        **ep,
        "steps/observation/image_3": [buf.getvalue()] * STEPS,
        "episode_metadata/has_image_3": False,
    }


def _no_language(ep: dict) -> dict:
    """Empty instructions, as Bridge records an episode without language: `has_language` false (without
    the flag, and without `task:`, the episode is quarantined: nothing gives it a task)."""
    return {**ep, _TEXT: [""] * STEPS, "episode_metadata/has_language": False}


def _absent_wrist(rows: list[dict]) -> None:
    assert all(r["image_left_wrist"] is None for r in rows)  # black frames: a masked slot
    assert all(r["image_base_1"] is None and r["image_base_0"] is not None for r in rows)


def _task_is_none(rows: list[dict]) -> None:
    assert all(r["task"] is None for r in rows)


def _bad_length_crc(data: bytes) -> bytes:
    return data[:8] + struct.pack("<I", struct.unpack("<I", data[8:12])[0] ^ 0xFFFF) + data[12:]


def _case(name: str, expect, **edit) -> Case:
    return Case(name, "rlds", Edit(**edit), expect)


_IMG0, _TEXT = "steps/observation/image_0", "steps/language_instruction"
CASES = [
    _case(
        "rlds_data_crc",
        Quarantined("record 0 at byte 0: data checksum mismatch"),
        file=lambda d: flip(d, 40, 1),
    ),
    _case(
        "rlds_length_crc", Quarantined("record 0 at byte 0: length checksum mismatch"), file=_bad_length_crc
    ),
    _case(
        "rlds_truncated", Quarantined("record 0 at byte 0: truncated data"), file=lambda d: d[: len(d) - 50]
    ),
    _case(
        "rlds_not_an_example",
        Quarantined("record 0 is not a tf.train.Example"),
        record=lambda r: b"\xff\xff\xff\xff" + r[:20],
    ),
    _case(
        "rlds_text_not_utf8",
        Quarantined("is not UTF-8 text", _TEXT, 2),
        episode=lambda ep: {**ep, _TEXT: ["pick it up"] * 2 + [b"put \xff\xfe down"] * (STEPS - 2)},
    ),
    _case(
        "rlds_image_undecodable",
        Quarantined("image does not decode", _IMG0, 1),
        episode=_frame(_IMG0, 1, b"\xff\xd8 no"),
    ),
    _case(
        "rlds_image_bomb",
        Quarantined("above the cap of 50 MP", _IMG0, 3),
        episode=_frame(_IMG0, 3, bomb_png()),
    ),
    _case(  # 60 MP: below Pillow's own refusal (2 x 89 MP), above ours
        "rlds_image_60mp",
        Quarantined("above the cap of 50 MP", _IMG0, 0),
        episode=_frame(_IMG0, 0, bomb_jpeg(10000, 6000)),
    ),
    _case(
        "rlds_inf_action", Quarantined("non-finite", "action", 2), episode=_set("steps/action", 2, 4, np.inf)
    ),
    _case(
        "rlds_action_steps_short",
        Quarantined("steps/action has 35 values, not a multiple of the 6 steps", "steps/action"),
        episode=_steps("steps/action", STEPS - 1),
    ),
    _case(
        "rlds_camera_frames_short",
        Quarantined("camera image_0 has 5 frames, the episode has 6", _IMG0),
        episode=_steps(_IMG0, STEPS - 1),
    ),
    _case(
        "rlds_instruction_count",
        Quarantined(f"{_TEXT} has 4 values, the episode has 6 steps", _TEXT),
        episode=_steps(_TEXT, STEPS - 2),
    ),
    _case(
        "rlds_state_width",
        Quarantined("state has 6 columns .* says 7", "state"),
        episode=lambda ep: {**ep, "steps/observation/state": ep["steps/observation/state"][:, :6]},
    ),
    _case("data_rlds_empty_instruction", Data(_task_is_none), episode=_no_language),
    _case("data_rlds_absent_wrist_camera", Data(_absent_wrist), episode=_black_wrist),
]


def write(root: Path, rel: str, cases: list[Case], goods: int) -> dict[str, str]:
    from vlamix.sources.synthetic.rlds_writer import write_rlds

    folder = root / rel
    (good,) = write_rlds(folder, "good", _features(), {"train": [_episode(100 + k) for k in range(goods)]})
    if not goods:
        good.unlink()
    out = {f"good_{k}": f"{rel}/{good.name}" for k in range(goods)}
    for case in cases:
        name = f"{case.name}-train.tfrecord-00000-of-00001"
        _write_case(folder / name, zlib.crc32(case.name.encode()) % 10_000, case.make)
        out[case.name] = f"{rel}/{name}"
    return out


def entry(name: str, rel: str, robot: str | None = None) -> str:
    return f"{{name: {name}, kind: CE, format: rlds, path: {rel}, embodiment: widowx_bridge}}"


FORMAT = Format("rlds", write, entry)
