"""TFRecord framing and Example bytes, checked against real TensorFlow."""

from __future__ import annotations

import struct
from pathlib import Path

import tensorflow as tf

from imagenet_tfrecords.images.prepare import StoredImage
from imagenet_tfrecords.plan.shards import ShardItem
from imagenet_tfrecords.output.records import build_example, frame_record, masked_crc32c

ITEM = ShardItem("/x/n01440764_1.JPEG", "n01440764_1.JPEG", 1, "n01440764", "tench, Tinca tinca", ((0.1, 0.2, 0.5, 0.9),))
IMAGE = StoredImage(b"\xff\xd8\xff fake jpeg bytes", 375, 500, ITEM.boxes)


def test_masked_crc_of_the_standard_check_value() -> None:
    crc = 0xE3069283  # CRC-32C of b"123456789"
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_framing_matches_tensorflows_writer(tmp_path: Path) -> None:
    payloads = [b"", b"a", build_example(ITEM, IMAGE), bytes(range(256)) * 40]
    ours = b"".join(frame_record(p) for p in payloads)
    with tf.io.TFRecordWriter(str(tmp_path / "tf")) as writer:
        for payload in payloads:
            writer.write(payload)
    assert ours == (tmp_path / "tf").read_bytes()
    (tmp_path / "ours").write_bytes(ours)
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "ours"))] == payloads
    assert struct.unpack_from("<Q", ours)[0] == 0


def test_example_parses_in_tensorflow_with_the_same_values() -> None:
    example = tf.train.Example.FromString(build_example(ITEM, IMAGE))
    feature = example.features.feature
    assert feature["image/encoded"].bytes_list.value == [IMAGE.encoded]
    assert feature["image/class/text"].bytes_list.value == [b"tench, Tinca tinca"]
    assert feature["image/height"].int64_list.value == [375]
    assert feature["image/object/bbox/ymax"].float_list.value == [tf.constant(0.9, tf.float32).numpy()]
    assert feature["image/object/bbox/label"].int64_list.value == [1]


def test_serialization_is_deterministic() -> None:
    assert len({build_example(ITEM, IMAGE) for _ in range(20)}) == 1


def test_empty_box_lists_are_typed_lists() -> None:
    example = tf.train.Example.FromString(build_example(ITEM, StoredImage(b"x", 1, 1, ())))
    feature = example.features.feature
    assert feature["image/object/bbox/xmin"].WhichOneof("kind") == "float_list"
    assert feature["image/object/bbox/label"].WhichOneof("kind") == "int64_list"
