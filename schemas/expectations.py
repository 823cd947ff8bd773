"""What a valid record is, as suites of great_expectations' column expectations (schemas/row_checks.py
`Expect`, checked vectorized; `to_gx()` gives each as a great_expectations object): one per source kind
over frames (robot data) and items (web data), checked row by row as each episode or item batch is
extracted. A row that fails is quarantined with the expectation that failed (pipelines/quality.py runs
them).

- Frames (MM, ME, CE): every state and action dim finite and inside the embodiment's declared range
  (`range:` in its spec, else DEFAULT_RANGES by kind); a delta rotation dim's wrapped step at most
  MAX_ROTATION_SPEED / control rate (degrees logged as radians fail it); timestamps strictly increasing at the declared
  control rate (each step within 0.5x..2x of 1/rate); task text valid Unicode (no replacement character
  U+FFFD, nor lone surrogates, the marks of a broken decode).
- Items (WD): image bytes present and a JPEG/PNG signature; every turn's prompt and target valid Unicode.
- Samples of robot data (after the chain, at build): normalized state and actions within SAMPLE_BAND,
  dim masks as wide as the embodiment, token ids inside the tokenizer set's vocabulary, every camera
  image a whole 224x224 colour JPEG (its header and end marker: schemas/image_codec.py jpeg_is_whole).
  A failing sample quarantines its episode.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vlamix.schemas.embodiment import Embodiment, dim_range, rotation_step_limit
from vlamix.schemas.row_checks import Expect

__all__ = [
    "BROKEN_TEXT",
    "SAMPLE_BAND",
    "dim_cell",
    "dim_expectations",
    "dim_labels",
    "dim_table",
    "frame_expectations",
    "frame_table",
    "item_expectations",
    "item_table",
    "sample_expectations",
    "sample_table",
]

BROKEN_TEXT = "\ufffd"  # the replacement character: text that went through a broken decode


def _clean(text: str) -> str:
    """Lone surrogates (undecodable bytes kept by `surrogateescape`) become U+FFFD, which the suites catch;
    Arrow-backed pandas strings cannot hold them at all."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


IMAGE_SIGNATURE = r"^(ffd8ff|89504e47)"  # JPEG, PNG (hex of the first bytes)


def _col(part: str, name: str) -> str:
    return f"{part}.{name}"


def dim_labels(emb: Embodiment) -> list[str]:
    """`state.<dim>` and `action.<dim>` names, in the order of dim_table's dims."""
    return [_col("state", d.name) for d in emb.state] + [_col("action", d.name) for d in emb.action]


def dim_table(rows: dict, emb: Embodiment) -> pd.DataFrame:
    """Every state and action value of the frames (`state` [T, Ds], `action` [T, Da]) in one long `value`
    column, frame-major (table row r is frame r // D, dim r % D, D = Ds + Da), non-finite values made
    null, and `excess`: how far the value lies outside its dim's declared range (max(lo - v, v - hi);
    <= 0 inside, exactly, as the sign of a float difference is exact). Long rather than one column per
    dim because great_expectations' cost grows with the number of expectations, not of rows: two
    expectations over T x D rows instead of two per dim (measured 10x faster per episode)."""
    state = np.asarray(rows["state"], dtype=np.float64).reshape(len(rows["state"]), emb.state_dim)
    action = np.asarray(rows["action"], dtype=np.float64).reshape(len(rows["action"]), emb.action_dim)
    values = np.concatenate([state, action], axis=1)
    values[~np.isfinite(values)] = np.nan  # +-inf would pass a null check; the not-null expectation fails it
    ranges = np.array([dim_range(d) for d in (*emb.state, *emb.action)], dtype=np.float64).reshape(-1, 2)
    excess = np.maximum(ranges[:, 0] - values, values - ranges[:, 1])
    dims = (*emb.state, *emb.action)
    rot6d = {
        id(d) for part in ("state", "action") for d in emb.rot6d_dims(part)
    }  # matrix entries, not angles
    for k, d in enumerate(dims):  # delta rotations: the wrapped step must be a plausible turn too
        limit = None if id(d) in rot6d else rotation_step_limit(d, emb.control_rate_hz)
        if limit is not None:
            wrapped = np.abs(np.angle(np.exp(1j * values[:, k])))
            excess[:, k] = np.fmax(excess[:, k], wrapped - limit)
    return pd.DataFrame({"value": values.ravel(), "excess": excess.ravel()})


def dim_expectations() -> list[Expect]:
    return [
        Expect("expect_column_values_to_not_be_null", "value"),
        Expect("expect_column_values_to_be_between", "excess", {"max_value": 0.0}),
    ]


def dim_cell(table: pd.DataFrame, emb: Embodiment):
    """A dim_table row -> (frame row, `state.<dim>` or `action.<dim>`, the value), for quality.failures."""
    labels = dim_labels(emb)
    values = table["value"].to_numpy()

    def locate(row: int, column: str | None, value: object) -> tuple[int, str, object]:
        v = float(values[row])
        return row // len(labels), labels[row % len(labels)], None if np.isnan(v) else v

    return locate


def frame_table(rows: dict, emb: Embodiment) -> pd.DataFrame:
    """Per frame: `timestamp`, `dt` (the step to the previous frame; null on the first) and `task`."""
    ts = np.asarray(rows["timestamp"], dtype=np.float64)
    ts = np.where(np.isfinite(ts), ts, np.nan)
    dt = np.concatenate([[np.nan], np.diff(ts)]) if len(ts) else ts
    return pd.DataFrame({"timestamp": ts, "dt": dt, "task": [_clean(t or "") for t in rows["task"]]})


def frame_expectations(emb: Embodiment) -> list[Expect]:
    step = 1.0 / emb.control_rate_hz
    return [
        Expect("expect_column_values_to_be_increasing", "timestamp", {"strictly": True}),
        Expect(
            "expect_column_values_to_be_between", "dt", {"min_value": 0.5 * step, "max_value": 2.0 * step}
        ),
        Expect("expect_column_values_to_not_match_regex", "task", {"regex": BROKEN_TEXT}),
    ]


def item_table(items: list[dict]) -> pd.DataFrame:
    """Item rows -> `image_head` (hex of the first bytes), `text` (every turn's prompt and target)."""
    return pd.DataFrame(
        {
            "image_head": [(it.get("image") or b"")[:4].hex() for it in items],
            "text": [
                _clean("\n".join(f"{t['prompt']}\n{t['target']}" for t in it.get("turns") or []))
                for it in items
            ],
        }
    )


def item_expectations() -> list[Expect]:
    return [
        Expect("expect_column_values_to_match_regex", "image_head", {"regex": IMAGE_SIGNATURE}),
        Expect("expect_column_values_to_not_match_regex", "text", {"regex": BROKEN_TEXT}),
    ]


# Samples (after the chain): normalized values past this many half-spans from the middle mean the dataset's
# statistics do not describe the sample (a glitch inside the declared range, or a mostly-constant dim).
SAMPLE_BAND = 100.0
IMAGE_SIZE = 224


def sample_table(records: list[dict], emb: Embodiment) -> pd.DataFrame:
    """Per built sample: the largest normalized |value| over its real state dims and real action
    steps/dims, its mask widths, its token id range and whether every camera image is a whole 224x224
    JPEG."""

    from vlamix.schemas.image_codec import black_jpeg, jpeg_is_whole

    black = black_jpeg(IMAGE_SIZE)  # an absent camera's stand-in: our own constant bytes, nothing to check

    def images_ok(rec: dict) -> bool:
        return all(
            rec[key] == black or jpeg_is_whole(rec[key], IMAGE_SIZE, IMAGE_SIZE)
            for key in ("image_base_0", "image_base_1", "image_left_wrist", "image_right_wrist")
        )

    rows = []
    for rec in records:
        state = np.abs(np.asarray(rec["state"], np.float64)[: emb.state_dim])
        actions = np.asarray(rec["actions"], np.float64)[~np.asarray(rec["action_is_pad"], bool)][
            :, : emb.action_dim
        ]
        ids = np.asarray(rec["input_ids"] if rec.get("input_ids") is not None else [0])
        rows.append(
            {
                "state_abs_max": float(np.nan_to_num(state, nan=np.inf).max(initial=0.0)),
                "actions_abs_max": float(np.nan_to_num(np.abs(actions), nan=np.inf).max(initial=0.0)),
                "state_dims": int(np.sum(rec["state_dim_mask"])),
                "action_dims": int(np.sum(rec["action_dim_mask"])),
                "token_min": int(ids.min()),
                "token_max": int(ids.max()),
                "images_ok": images_ok(rec),
            }
        )
    return pd.DataFrame(rows)


def sample_expectations(emb: Embodiment, vocab_size: int) -> list[Expect]:
    between, in_set = "expect_column_values_to_be_between", "expect_column_values_to_be_in_set"
    return [
        Expect(between, "state_abs_max", {"min_value": 0.0, "max_value": SAMPLE_BAND}),
        Expect(between, "actions_abs_max", {"min_value": 0.0, "max_value": SAMPLE_BAND}),
        Expect(in_set, "state_dims", {"value_set": [emb.state_dim]}),
        Expect(in_set, "action_dims", {"value_set": [emb.action_dim]}),
        Expect(between, "token_min", {"min_value": 0, "max_value": vocab_size - 1}),
        Expect(between, "token_max", {"min_value": 0, "max_value": vocab_size - 1}),
        Expect(in_set, "images_ok", {"value_set": [True]}),
    ]
