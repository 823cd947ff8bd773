"""Episode success: a constant from the sources file, or a per-episode field of the raw data."""

from __future__ import annotations

import numpy as np

__all__ = ["success_value"]


def success_value(setting: bool | str | None, lookup) -> bool | None:
    """`setting` True/False/None is the answer; a string names a field that `lookup(name)` returns
    (None when the episode lacks it). Numbers and strings like "true"/"1" count as booleans."""
    if setting is None or isinstance(setting, bool):
        return setting
    value = lookup(setting)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "success", "succeeded")
    arr = np.asarray(value).ravel()
    return bool(arr[0]) if arr.size else None
