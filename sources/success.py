"""Episode success: a constant from the sources file, or a field of the raw data reduced over the
episode by a declared rule (`success: {field: next.success, reduce: last}`; a bare field name reduces by
`last`, the default of every format: LeRobot's `next.success` and RLDS's `steps/reward` are true only
at the last step)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vlamix.sources.config import SuccessRule
from vlamix.sources.fields import FieldError, is_null

__all__ = ["DEFAULT_REDUCE", "success_rule", "success_value"]

DEFAULT_REDUCE = "last"
_TRUE = ("1", "true", "yes", "success", "succeeded", "successful")
_FALSE = ("0", "false", "no", "failure", "failed", "fail", "")


def success_rule(setting: bool | str | SuccessRule | None) -> SuccessRule | None:
    """The rule a setting names: None for a constant (or no setting)."""
    if isinstance(setting, SuccessRule):
        return setting
    if isinstance(setting, str):
        return SuccessRule(setting, DEFAULT_REDUCE)
    return None


def _as_bool(value: object, what: str) -> bool:
    """One step's value: a bool, a number (> 0 is success, as a reward is), or a yes/no word."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise FieldError(f"{what} is not UTF-8 text") from None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if value != value:  # NaN
            raise FieldError(f"{what} is NaN, not a success value")
        return value > 0
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise FieldError(f"{what} is the text {value[:40]!r}, not one of {_TRUE} or {_FALSE}")
    raise FieldError(
        f"{what} is {type(value).__name__} {repr(value)[:60]}, not a bool, number or yes/no word"
    )


def success_value(setting: bool | str | SuccessRule | None, lookup: Callable[[str], object]) -> bool | None:
    """`setting` True/False/None is the answer; otherwise `lookup(field)` gives the field's value for
    the episode (None when it lacks it): one value, or one per step, reduced by the rule. Raises
    FieldError for a value that is not a success value (never guessed)."""
    rule = success_rule(setting)
    if rule is None:
        return setting  # type: ignore[return-value]
    value = lookup(rule.field)
    if is_null(value):
        return None
    if isinstance(value, str | bytes | bool | int | float | np.generic):
        steps = [value]
    else:
        steps = [v for v in np.asarray(value, dtype=object).ravel() if not is_null(v)]
    if not steps:
        return None
    flags = [_as_bool(v, f"success field {rule.field!r} step {k}") for k, v in enumerate(steps)]
    if rule.reduce == "last":
        return flags[-1]
    if rule.reduce == "first":
        return flags[0]
    if rule.reduce == "any":
        return any(flags)
    return all(flags)
