"""tf.train.Example building and TFRecord framing, without TensorFlow."""

from __future__ import annotations

import os
import struct

import google_crc32c

from ..images.prepare import StoredImage
from ..plan.shards import ShardItem
from ..proto.imgrec_example_pb2 import Example
from .schema import BOX_COORDINATES, BOX_LABEL, RECORD_SCHEMA

_CRC_MASK_DELTA = 0xA282EAD8  # tsl/lib/hash/crc32c.h kMaskDelta
RECORD_OVERHEAD = 16  # u64 length + u32 length CRC + u32 data CRC (tensorflow record_writer.cc)


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def frame_record(payload: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, payload, masked CRC of the payload."""
    length = struct.pack("<Q", len(payload))
    return b"".join(
        (length, struct.pack("<I", masked_crc32c(length)), payload, struct.pack("<I", masked_crc32c(payload)))
    )


def dali_index_line(offset: int, record_size: int) -> str:
    """One line of a DALI `tfrecord2idx` index: where a record starts and its framed size."""
    return f"{offset} {record_size}\n"


def _varying_values(item: ShardItem, image: StoredImage) -> dict[str, list]:
    """Each key's values for this image, except the schema's constants."""
    return {
        "image/height": [image.height],
        "image/width": [image.width],
        "image/class/label": [item.label],
        "image/class/synset": [item.synset.encode()],
        "image/class/text": [item.text.encode()],
        **{key: [box[column] for box in image.boxes] for column, key in enumerate(BOX_COORDINATES)},
        BOX_LABEL: [item.label] * len(image.boxes),
        "image/filename": [os.fsencode(item.filename)],  # a name that is not UTF-8 keeps its bytes
        "image/encoded": [image.encoded],
    }


def build_example(item: ShardItem, image: StoredImage) -> bytes:
    """The Inception-schema Example for one image, serialized deterministically."""
    values = _varying_values(item, image)
    example = Example()
    feature = example.features.feature
    for key, field in RECORD_SCHEMA.items():
        typed = getattr(feature[key], field.list_kind)
        typed.SetInParent()  # an empty list is still a typed list, as in the Inception writer
        typed.value.extend(values[key] if field.constant is None else [field.constant])
    return example.SerializeToString(deterministic=True)
