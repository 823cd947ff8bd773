"""Row expectations, declared the way great_expectations names them and checked vectorized over a whole
table at once (numpy/pandas): the quality gates run on every extracted episode and built sample, where
great_expectations' own validation costs ~70 ms a suite and ~3 s of import per worker process.

Each `Expect` keeps great_expectations' semantics for the pandas engine exactly (nulls are skipped by
every check but `expect_column_values_to_not_be_null`; `increasing` compares each non-null value with the
previous non-null one; regexes match anywhere, as `str.contains`); `to_gx()` gives the same expectation
as a great_expectations object, and tests/pipelines/test_row_checks.py holds the two to the same failing
rows and values. The dataset-level checkpoint and its Data Docs stay great_expectations'
(pipelines/quality.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["TYPES", "Expect"]

TYPES = {  # our name (great_expectations' snake_case type) -> its class in great_expectations.expectations
    "expect_column_values_to_not_be_null": "ExpectColumnValuesToNotBeNull",
    "expect_column_values_to_be_between": "ExpectColumnValuesToBeBetween",
    "expect_column_values_to_be_increasing": "ExpectColumnValuesToBeIncreasing",
    "expect_column_values_to_match_regex": "ExpectColumnValuesToMatchRegex",
    "expect_column_values_to_not_match_regex": "ExpectColumnValuesToNotMatchRegex",
    "expect_column_values_to_be_in_set": "ExpectColumnValuesToBeInSet",
}


@dataclass(frozen=True)
class Expect:
    """One column expectation: `type` as great_expectations names it, its column and its arguments
    (min_value, max_value, strictly, regex, value_set)."""

    type: str
    column: str
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"no vectorized check for {self.type!r}; known: {sorted(TYPES)}")

    def unexpected(self, column: pd.Series) -> np.ndarray:
        """Positions (0-based) of the rows that fail, in order."""
        null = column.isna().to_numpy()
        if self.type == "expect_column_values_to_not_be_null":
            return np.flatnonzero(null)
        kept = np.flatnonzero(~null)
        values = column.iloc[kept]
        if self.type == "expect_column_values_to_be_between":
            v = values.to_numpy(dtype=np.float64)
            ok = np.ones(len(v), dtype=bool)
            if self.kwargs.get("min_value") is not None:
                ok &= v >= self.kwargs["min_value"]
            if self.kwargs.get("max_value") is not None:
                ok &= v <= self.kwargs["max_value"]
        elif self.type == "expect_column_values_to_be_increasing":
            step = np.diff(values.to_numpy(dtype=np.float64), prepend=np.nan)
            ok = np.isnan(step) | ((step > 0) if self.kwargs.get("strictly") else (step >= 0))
        elif self.type in ("expect_column_values_to_match_regex", "expect_column_values_to_not_match_regex"):
            pattern = re.compile(self.kwargs["regex"])
            found = np.fromiter((pattern.search(str(v)) is not None for v in values), bool, len(values))
            ok = found if self.type == "expect_column_values_to_match_regex" else ~found
        else:  # in_set
            ok = values.isin(list(self.kwargs["value_set"])).to_numpy()
        return kept[~ok]

    def to_gx(self):
        """The same expectation as a great_expectations object (imports it: driver-side only)."""
        import great_expectations.expectations as gxe

        return getattr(gxe, TYPES[self.type])(column=self.column, **self.kwargs)
