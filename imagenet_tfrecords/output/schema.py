"""The Inception record schema, defined once: every key of a record, its type, and the values that never vary.

The writer (`records.build_example`), `--verify` and `dataset_info.json` all read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

LIST_KINDS = {"int64": "int64_list", "float32": "float_list", "string": "bytes_list"}  # tf.train.Feature's lists


@dataclass(frozen=True)
class RecordField:
    """One key of every record."""

    key: str
    dtype: str  # as TensorFlow names it: int64, float32, string
    per_box: bool = False  # one value per bounding box (none for most images); else exactly one value
    constant: int | bytes | None = None  # the value of every record, for a key that never varies

    @property
    def list_kind(self) -> str:
        """The `tf.train.Feature` list that holds the values."""
        return LIST_KINDS[self.dtype]

    @property
    def shape(self) -> list[None]:
        """As TensorFlow Datasets writes it: [] one value (FixedLenFeature), [None] a list (VarLenFeature)."""
        return [None] if self.per_box else []


BOX_COORDINATES = tuple(f"image/object/bbox/{axis}" for axis in ("xmin", "ymin", "xmax", "ymax"))  # a box's order
BOX_LABEL = "image/object/bbox/label"

# Every key, always present, in the order of the Inception writer (build_imagenet_data.py):
# docs/imagenet-facts.md, "Record schema".
RECORD_SCHEMA = {field.key: field for field in (
    RecordField("image/height", "int64"),
    RecordField("image/width", "int64"),
    RecordField("image/colorspace", "string", constant=b"RGB"),
    RecordField("image/channels", "int64", constant=3),
    RecordField("image/class/label", "int64"),
    RecordField("image/class/synset", "string"),
    RecordField("image/class/text", "string"),
    *(RecordField(key, "float32", per_box=True) for key in BOX_COORDINATES),
    RecordField(BOX_LABEL, "int64", per_box=True),
    RecordField("image/format", "string", constant=b"JPEG"),
    RecordField("image/filename", "string"),
    RecordField("image/encoded", "string"),
)}
SINGLE_VALUED = tuple(key for key, field in RECORD_SCHEMA.items() if not field.per_box)
CONSTANTS = {key: field.constant for key, field in RECORD_SCHEMA.items() if field.constant is not None}
