"""Versioned Arrow schemas: each record schema carries its name and version in its metadata, every
field carries a doc string, and `validate` is what every writer and reader calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["RecordSchema", "SchemaError", "doc_field", "schema_version_of"]

NAME_KEY = b"vlamix.record"
VERSION_KEY = b"vlamix.version"
DOC_KEY = b"doc"


class SchemaError(ValueError):
    """Data that does not match a record schema (wrong version, fields, types or values)."""


def doc_field(name: str, type_: pa.DataType, doc: str, nullable: bool = False) -> pa.Field:
    """A field whose meaning travels with it (the schema doc page is generated from these)."""
    return pa.field(name, type_, nullable=nullable, metadata={DOC_KEY: doc.encode()})


def schema_version_of(schema: pa.Schema) -> tuple[str, int] | None:
    meta = schema.metadata or {}
    if NAME_KEY not in meta or VERSION_KEY not in meta:
        return None
    return meta[NAME_KEY].decode(), int(meta[VERSION_KEY])


@dataclass(frozen=True)
class RecordSchema:
    """One record type: its Arrow schema plus value checks that types alone cannot express."""

    name: str
    version: int
    doc: str
    fields: tuple[pa.Field, ...]
    checks: tuple[Callable[[pa.Table], str | None], ...] = field(default=())

    @property
    def arrow(self) -> pa.Schema:
        return pa.schema(
            list(self.fields),
            metadata={NAME_KEY: self.name.encode(), VERSION_KEY: str(self.version).encode()},
        )

    def table(self, rows: list[dict], where: str = "") -> pa.Table:
        """Rows (dicts) -> a validated table carrying this schema's metadata."""
        try:
            t = pa.Table.from_pylist(rows, schema=self.arrow)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, KeyError) as e:
            raise SchemaError(
                f"{where or self.name}: rows do not fit the {self.name} schema v{self.version}: {e}"
            ) from e
        self.validate(t, where)
        return t

    def validate(self, data: pa.Table | pa.RecordBatch, where: str = "") -> None:
        """Raise SchemaError naming `where` (a file, a dataset) unless `data` is a valid record batch."""
        where = where or f"{self.name} records"
        found = schema_version_of(data.schema)
        if found is not None and found != (self.name, self.version):
            raise SchemaError(
                f"{where}: holds {found[0]} records of schema v{found[1]}, expected {self.name} v{self.version}; "
                "re-run the step that wrote it with this version of vlamix"
            )
        want = {f.name: f for f in self.fields}
        have = {f.name: f for f in data.schema}
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        if missing or extra:
            raise SchemaError(f"{where}: {self.name} fields differ: missing {missing}, unexpected {extra}")
        for name, f in want.items():
            if not have[name].type.equals(f.type):
                raise SchemaError(
                    f"{where}: field {name!r} is {have[name].type}, the {self.name} schema says {f.type}"
                )
            col = data.column(name)
            if not f.nullable and col.null_count:
                first = pc.index(pc.is_null(col), True).as_py()
                raise SchemaError(
                    f"{where}: field {name!r} is null in row {first} ({self._key(data, first)})"
                )
        table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
        for check in self.checks:
            problem = check(table)
            if problem:
                raise SchemaError(f"{where}: {problem}")

    @staticmethod
    def _key(data: pa.Table | pa.RecordBatch, row: int) -> str:
        if "key" in data.schema.names:
            return f"key {data.column('key')[row].as_py()!r}"
        return "no key"
