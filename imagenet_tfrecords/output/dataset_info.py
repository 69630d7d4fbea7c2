"""`dataset_info.json`: what a reader of the output needs, as TensorFlow Datasets writes it.

The feature spec of every record (key, dtype, shape), the class count and label convention, and
each split's records and shards, for every split recorded in the directory's manifest (not only
those built by the latest run). Written atomically at the end of every build.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
from ..inputs.labels import ClassTable
from ..storage.folders import folder
from .manifest import DATASET_INFO_NAME
from .schema import RECORD_SCHEMA

FORMAT_VERSION = 1

# What each key holds, in the order dataset_info.json lists them; its dtype and shape come from the schema.
FEATURE_DESCRIPTIONS = {
    "image/encoded": "the image, an RGB JPEG",
    "image/format": "always JPEG",
    "image/filename": "the source file's name, as the file system gives it",
    "image/height": "height of the stored JPEG in pixels",
    "image/width": "width of the stored JPEG in pixels",
    "image/channels": "always 3",
    "image/colorspace": "always RGB",
    "image/class/label": "the class, numbered by label_offset",
    "image/class/synset": "the class's WordNet ID, e.g. n01440764",
    "image/class/text": "the class's human-readable name",
    "image/object/bbox/xmin": "box left edges, relative to the width (0..1)",
    "image/object/bbox/ymin": "box top edges, relative to the height (0..1)",
    "image/object/bbox/xmax": "box right edges, relative to the width (0..1)",
    "image/object/bbox/ymax": "box bottom edges, relative to the height (0..1)",
    "image/object/bbox/label": "each box's class, the same as image/class/label",
}

LABEL_CONVENTIONS = {
    1: "labels 1..num_classes in the order of the labels file; 0 is the background class, unused "
       "(the Inception build script's convention)",
    0: "labels 0..num_classes-1 in the order of the labels file (as TensorFlow Datasets and torchvision)",
}


def _split_info(split: str, plan: dict, shards: list[dict]) -> dict:
    """One split's counts from its plan and its finished shards (in shard order)."""
    lengths = [entry["records"] for entry in shards]
    return {
        "num_records": sum(lengths),
        "num_shards": plan["shards"],
        "complete": len(shards) == plan["shards"],  # false while a build of it is unfinished
        "num_bytes": sum(entry["size"] for entry in shards),
        "shard_lengths": lengths,
        "num_bad_images": sum(len(entry["bad_images"]) for entry in shards),
        "classes_present": plan["classes_present"],
        "file_pattern": f"{split}-?????-of-{plan['shards']:05d}",
    }


def dataset_info(manifest: dict, classes: ClassTable) -> dict:
    """The contents of dataset_info.json for a directory whose manifest is `manifest`."""
    splits = {}
    for split, plan in sorted(manifest.get("splits", {}).items()):
        shards = sorted((e for e in manifest["shards"].values() if e["split"] == split), key=lambda e: e["index"])
        splits[split] = _split_info(split, plan, shards)
    options = manifest["options"]
    offset = options["label_offset"]
    return {
        "name": "imagenet_tfrecords",
        "description": "Images in the ImageNet layout as TFRecord files of tf.train.Example protos with the "
                       "Inception schema, written by build_imagenet_data.py.",
        "version": __version__,
        "format_version": FORMAT_VERSION,
        "file_format": "tfrecord",
        "features": {key: {"dtype": RECORD_SCHEMA[key].dtype, "shape": RECORD_SCHEMA[key].shape, "description": text}
                     for key, text in FEATURE_DESCRIPTIONS.items()},
        "num_classes": len(classes.wnids),
        "label_offset": offset,
        "label_range": [offset, offset + len(classes.wnids) - 1],
        "label_convention": LABEL_CONVENTIONS[offset],
        "synsets": list(classes.wnids),  # label L is synsets[L - label_offset]
        "splits": splits,
        "image": options["image"],
        "shuffle_seed": options["shuffle_seed"],
    }


def write_dataset_info(output_dir: Path | str, manifest: dict, classes: ClassTable) -> None:
    text = json.dumps(dataset_info(manifest, classes), indent=1) + "\n"
    folder(output_dir).write(DATASET_INFO_NAME, text, "the dataset description")
