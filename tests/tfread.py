"""Read shards back with real TensorFlow (tf.data + tf.io.parse_single_example)."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

INCEPTION_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/channels": tf.io.FixedLenFeature([], tf.int64),
    "image/colorspace": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    "image/class/synset": tf.io.FixedLenFeature([], tf.string),
    "image/class/text": tf.io.FixedLenFeature([], tf.string),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/label": tf.io.VarLenFeature(tf.int64),
}


def shard_files(directory: Path, split: str) -> list[str]:
    return sorted(str(p) for p in Path(directory).glob(f"{split}-*-of-*"))


def read_split(directory: Path, split: str) -> list[dict]:
    """Every record of a split, parsed with the full Inception schema into plain Python values."""
    records = []
    for serialized in tf.data.TFRecordDataset(shard_files(directory, split)):
        parsed = tf.io.parse_single_example(serialized, INCEPTION_FEATURES)
        record = {}
        for key, value in parsed.items():
            if isinstance(value, tf.SparseTensor):
                record[key] = value.values.numpy().tolist()
            else:
                value = value.numpy()
                record[key] = value.decode() if isinstance(value, bytes) and key != "image/encoded" else value
        records.append(record)
    return records


def raw_features(directory: Path, split: str) -> dict[str, str]:
    """Key -> kind ('bytes_list', 'float_list', 'int64_list') of the first record, via tf.train.Example."""
    serialized = next(iter(tf.data.TFRecordDataset(shard_files(directory, split)))).numpy()
    example = tf.train.Example.FromString(serialized)
    return {key: feature.WhichOneof("kind") for key, feature in example.features.feature.items()}


def decode(encoded: bytes):
    return tf.io.decode_jpeg(encoded).numpy()
