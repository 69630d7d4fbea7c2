"""tf.train.Example building and TFRecord framing, without TensorFlow."""

from __future__ import annotations

import os
import struct

import google_crc32c

from ..images.prepare import StoredImage
from ..plan.shards import ShardItem
from ..proto.imgrec_example_pb2 import Example, Feature

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


def _bytes(feature: Feature, value: str | bytes) -> None:
    feature.bytes_list.value.append(value.encode() if isinstance(value, str) else value)


def build_example(item: ShardItem, image: StoredImage) -> bytes:
    """The Inception-schema Example for one image, serialized deterministically."""
    example = Example()
    feature = example.features.feature
    feature["image/height"].int64_list.value.append(image.height)
    feature["image/width"].int64_list.value.append(image.width)
    _bytes(feature["image/colorspace"], "RGB")
    feature["image/channels"].int64_list.value.append(3)
    feature["image/class/label"].int64_list.value.append(item.label)
    _bytes(feature["image/class/synset"], item.synset)
    _bytes(feature["image/class/text"], item.text)
    for axis, column in (("xmin", 0), ("ymin", 1), ("xmax", 2), ("ymax", 3)):
        floats = feature[f"image/object/bbox/{axis}"].float_list
        floats.SetInParent()  # an empty list is still a float_list, as in the Inception writer
        floats.value.extend(box[column] for box in image.boxes)
    box_labels = feature["image/object/bbox/label"].int64_list
    box_labels.SetInParent()
    box_labels.value.extend([item.label] * len(image.boxes))
    _bytes(feature["image/format"], "JPEG")
    _bytes(feature["image/filename"], os.fsencode(item.filename))  # a name that is not UTF-8 keeps its bytes
    _bytes(feature["image/encoded"], image.encoded)
    return example.SerializeToString(deterministic=True)
