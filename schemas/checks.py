"""Value checks shared by the record schemas (each returns a problem or None)."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["key_pattern", "one_of"]


def _first_bad(table: pa.Table, ok: pa.ChunkedArray) -> str:
    row = pc.index(ok, False).as_py()
    key = table.column("key")[row].as_py() if "key" in table.schema.names else row
    return f"row {row} (key {key!r})"


def one_of(column: str, allowed: tuple[str, ...]) -> Callable[[pa.Table], str | None]:
    def check(table: pa.Table) -> str | None:
        col = table.column(column)
        ok = pc.or_(
            pc.is_null(col), pc.is_in(col, value_set=pa.array(allowed))
        )  # nulls are the nullability check's business
        if not pc.all(ok).as_py():
            return f"{column} of {_first_bad(table, ok)} is not one of {list(allowed)}"
        return None

    return check


def key_pattern(pattern: str, example: str) -> Callable[[pa.Table], str | None]:
    def check(table: pa.Table) -> str | None:
        ok = pc.match_substring_regex(table.column("key"), pattern)
        if not pc.all(ok).as_py():
            return f"key of {_first_bad(table, ok)} does not look like {example}"
        return None

    return check
