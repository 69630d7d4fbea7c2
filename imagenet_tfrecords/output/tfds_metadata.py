"""`dataset_info.json` and `features.json`: the output directory as a TensorFlow Datasets directory.

`tfds.builder_from_directory(OUT)` reads these two files, exactly as TensorFlow Datasets 4.9 writes them
(`DatasetInfo.write_to_directory`), and then `as_dataset(split=...)` gives every record with its
features: the image decoded to (height, width, 3) uint8, every other key as stored. They are written
here without importing TensorFlow Datasets; tests/test_tfds.py reads them with it.

A record's flat keys are TFDS's nested features joined by "/" (`image/class/label` is
`features["image"]["class"]["label"]`). Only finished splits are listed: TFDS names a split's shards
from its shard count, so a split with shards missing would name files that are not there.
"""

from __future__ import annotations

import json

from .schema import RECORD_SCHEMA

TFDS_DATASET_NAME = "imagenet_tfrecords"
TFDS_VERSION = "1.0.0"  # the dataset's version for TFDS (x.y.z); this tool's own version is in imagenet_tfrecords.json
SHARD_TEMPLATE = "{SPLIT}-{SHARD_X_OF_Y}"  # train-00000-of-00004, then the format's suffix (plan/shards.FILE_SUFFIXES)
ENCODED_IMAGE = "image/encoded"  # the one key TFDS decodes: a JPEG, RGB (schema constants)

_FEATURE_CLASS = "tensorflow_datasets.core.features."
_INT64_LIST = {"dtype": "int64", "encoding": "none", "shape": {"dimensions": ["-1"]}}


def _feature(key: str) -> dict:
    """One record key as TFDS's feature connector JSON (FeatureConnector.to_json)."""
    field = RECORD_SCHEMA[key]
    if key == ENCODED_IMAGE:
        return {"image": {"dtype": "uint8", "encodingFormat": "jpeg", "shape": {"dimensions": ["-1", "-1", "3"]}},
                "pythonClassName": _FEATURE_CLASS + "image_feature.Image"}
    if field.dtype == "string":
        return {"pythonClassName": _FEATURE_CLASS + "text_feature.Text", "text": {}}
    if field.per_box:
        return {"pythonClassName": _FEATURE_CLASS + "tensor_feature.Tensor",
                "tensor": {"dtype": field.dtype, "encoding": "none", "shape": {"dimensions": ["-1"]}}}
    return {"pythonClassName": _FEATURE_CLASS + "scalar.Scalar",
            "tensor": {"dtype": field.dtype, "encoding": "none", "shape": {}}}


def _features_dict(children: dict) -> dict:
    return {"featuresDict": {"features": children}, "pythonClassName": _FEATURE_CLASS + "features_dict.FeaturesDict"}


def features_json() -> dict:
    """The record schema as TFDS's nested FeaturesDict (the contents of features.json)."""
    tree: dict = {}
    for key in RECORD_SCHEMA:
        *parents, leaf = key.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _feature(key)

    def nest(node: dict) -> dict:
        return _features_dict({name: nest(child) if "pythonClassName" not in child else child
                               for name, child in node.items()})
    return nest(tree)


def tfds_split(split: str, shard_lengths: list[int], num_bytes: int, shard_suffix: str) -> dict:
    """One split as TFDS's SplitInfo proto in JSON (64-bit integers are strings there)."""
    return {"filepathTemplate": SHARD_TEMPLATE + shard_suffix, "name": split, "numBytes": str(num_bytes),
            "shardLengths": [str(length) for length in shard_lengths]}


def tfds_dataset_info(splits: list[dict], file_format: str, description: str) -> dict:
    """TFDS's DatasetInfo proto in JSON (the contents of dataset_info.json); `splits` from `tfds_split`."""
    return {"description": description, "fileFormat": file_format, "name": TFDS_DATASET_NAME,
            "splits": sorted(splits, key=lambda s: s["name"]), "version": TFDS_VERSION}


def dataset_info_text(info: dict) -> str:
    """As TFDS writes it: protobuf's MessageToJson with sorted keys (2-space indent, no final newline)."""
    return json.dumps(info, indent=2, sort_keys=True)


def features_text() -> str:
    """As TFDS writes it (FeatureConnector.save_config): 4-space indent, sorted keys, no final newline."""
    return json.dumps(features_json(), indent=4, sort_keys=True)
