"""What a record is: the frame, item and sample schemas (versioned Arrow), and embodiment specs."""

from vlamix.schemas.frame import FRAME
from vlamix.schemas.item import ITEM
from vlamix.schemas.sample import SAMPLE
from vlamix.schemas.versioning import RecordSchema, SchemaError

RECORDS: tuple[RecordSchema, ...] = (FRAME, ITEM, SAMPLE)

__all__ = ["FRAME", "ITEM", "RECORDS", "SAMPLE", "RecordSchema", "SchemaError"]
