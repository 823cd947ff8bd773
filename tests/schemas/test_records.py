from __future__ import annotations

import pyarrow as pa
import pytest
from conftest import REPO

from vlamix.schemas import FRAME, ITEM, SAMPLE, SchemaError
from vlamix.schemas.doc import render_schema_doc
from vlamix.schemas.frame import frame_key


def _frame(**over) -> dict:
    row = {f.name: None for f in FRAME.fields}
    row.update(
        key=frame_key("mm", 3, 7),
        dataset="mm",
        kind="MM",
        embodiment="mobile_aloha",
        episode=3,
        frame=7,
        timestamp=0.14,
        state=[0.0] * 14,
        action=[0.0] * 16,
        image_base_0=b"\xff\xd8",
        split="train",
        length=10,
        episode_hash="ab" * 16,
        source_file="mm/episode_3.hdf5",
    )
    row.update(over)
    return row


def test_schema_doc_is_current():
    doc = (REPO / "docs" / "schemas.md").read_text()
    assert doc == render_schema_doc(), "docs/schemas.md drifted from schemas/: run `make schema-doc`"


def test_doc_explains_every_field():
    doc = render_schema_doc()
    for record in (FRAME, ITEM, SAMPLE):
        for f in record.fields:
            assert f"| `{f.name}` |" in doc
            assert f.metadata and f.metadata[b"doc"].strip(), f"{record.name}.{f.name} has no doc"


def test_valid_rows_make_a_table_with_version_metadata():
    t = FRAME.table([_frame()])
    assert t.schema.metadata[b"vlamix.record"] == b"frame"
    assert t.schema.metadata[b"vlamix.version"] == str(FRAME.version).encode()


def test_null_in_required_field_names_the_key():
    with pytest.raises(SchemaError, match=r"field 'split' is null in row 1 \(key 'mm/000003/000008'\)"):
        FRAME.table([_frame(), _frame(key=frame_key("mm", 3, 8), frame=8, split=None)], where="ep.hdf5")


def test_bad_value_is_named():
    with pytest.raises(SchemaError, match="kind of row 0 .* is not one of"):
        FRAME.table([_frame(kind="XX")])
    with pytest.raises(SchemaError, match="does not look like"):
        FRAME.table([_frame(key="mm/3/7")])


def test_other_version_is_refused():
    t = FRAME.table([_frame()])
    other = FRAME.version + 1
    meta = {**t.schema.metadata, b"vlamix.version": str(other).encode()}
    with pytest.raises(SchemaError, match=f"schema v{other}, expected frame v{FRAME.version}"):
        FRAME.validate(t.replace_schema_metadata(meta), "old.parquet")


def test_missing_and_extra_fields_are_listed():
    t = FRAME.table([_frame()]).drop_columns(["task"]).append_column("junk", pa.array([1]))
    with pytest.raises(SchemaError, match=r"missing \['task'\], unexpected \['junk'\]"):
        FRAME.validate(t)


def test_wrong_type_is_named():
    t = FRAME.table([_frame()])
    t = t.set_column(t.schema.get_field_index("episode"), "episode", pa.array([3], pa.int32()))
    with pytest.raises(SchemaError, match="field 'episode' is int32"):
        FRAME.validate(t)


def test_sample_schema_has_canonical_shapes():
    assert SAMPLE.arrow.field("actions").type == pa.list_(pa.list_(pa.float32(), 32), 50)
    assert SAMPLE.arrow.field("state").type == pa.list_(pa.float32(), 32)
