"""What the episode-file readers (ALOHA HDF5, RLDS) do alike with per-step values: the task in force at
each step, the step of a text that does not read, and the rate measured from the file's timestamps.

- Task: a text per step (sources/fields.py `per_step_text`). A step without text is under the
  instruction in force: the last one given before it, or, before any is given, the first one. An episode
  with no text on any step takes the sources file's `task:`; without one it has no task (`no_task`).
- Rate: where the file records timestamps (read as seconds), the median period between steps is checked
  against the embodiment's control rate (sources/frames.py `rate_problem`). Without timestamps there is
  nothing to check: frames are taken to be at the spec's control rate.
"""

from __future__ import annotations

import numpy as np

from vlamix.schemas.embodiment import Embodiment
from vlamix.sources.fields import FieldError, per_step_text
from vlamix.sources.frames import rate_problem

__all__ = ["bad_text_step", "measured_rate_problem", "no_task", "tasks_in_force"]


def tasks_in_force(texts: list[str | None], default: str | None) -> list[str | None] | None:
    """The task of every step, or None when no step has text and there is no `default` (the sources file's
    `task:`)."""
    given = [t for t in texts if t is not None]
    if not given:
        return [default] * len(texts) if default else None
    out: list[str | None] = []
    current = given[0]
    for text in texts:
        current = text if text is not None else current
        out.append(current)
    return out


def no_task(what: str) -> str:
    """The quarantine reason of an episode that nothing gives a task."""
    return (
        f"no task: {what} and the sources file sets no `task:`, so the episode would train on an empty "
        "prompt; set `task:` (the text such episodes are trained with) for this dataset"
    )


def bad_text_step(value: object, steps: int, what: str) -> int | None:
    """The first step whose text `per_step_text` refuses, when `value` holds a text per step; None for a
    value that is one text for the episode."""
    if not isinstance(value, np.ndarray | list | tuple):
        return None
    flat = list(np.asarray(value, dtype=object).ravel()) if isinstance(value, np.ndarray) else list(value)
    if len(flat) != steps or steps == 1:
        return None
    for k, v in enumerate(flat):
        try:
            per_step_text(v, 1, what)
        except FieldError:
            return k
    return None


def measured_rate_problem(times: object, steps: int, emb: Embodiment, what: str) -> str | None:
    """Why the timestamps `times` (one number per step, seconds) do not fit the spec's control rate: their
    median period is checked. Raises FieldError for timestamps that are not one number per step. Kept in
    float64 (float32 cannot tell apart the steps of an epoch time)."""
    t = np.asarray(times) if isinstance(times, np.ndarray | list | tuple) else None
    if t is None or t.dtype.kind not in "iuf" or t.size != steps or t.ndim > 2:
        kind = f"{t.dtype} values of shape {t.shape}" if t is not None else type(times).__name__
        raise FieldError(f"{what} holds {kind}, expected one number per step ({steps} steps)")
    t = t.astype(np.float64).ravel()
    if len(t) < 2:
        return None  # one step: no period to measure
    if not np.isfinite(t).all():
        raise FieldError(f"{what} holds a non-finite timestamp (NaN or inf)")
    period = float(np.median(np.diff(t)))
    hz = 1.0 / period if period > 0 else 0.0
    return rate_problem(
        hz, emb, f"the rate measured from {what} (median period {period:g} s, read as seconds)"
    )
