"""What a reader of the output needs: `imagenet_tfrecords.json`, and TensorFlow Datasets' two files.

`imagenet_tfrecords.json` holds the feature spec of every record (key, dtype, shape), the class count
and label convention, and each split's records and shards, for every split recorded in the
directory's manifest (not only those built by the latest run). `dataset_info.json` and
`features.json` (`tfds_metadata`) make the directory one that `tfds.builder_from_directory` loads.
All three are made from the manifest alone, so they are the same bytes whatever order of crashes
and reruns led to it, and are written atomically at the end of every build.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
from ..inputs.labels import ClassTable
from ..plan.shards import DEFAULT_FILE_FORMAT, FILE_SUFFIXES
from ..storage.folders import folder
from .manifest import INFO_NAME, TFDS_FEATURES_NAME, TFDS_INFO_NAME
from .schema import RECORD_SCHEMA
from .tfds_metadata import dataset_info_text, features_text, tfds_dataset_info, tfds_split

FORMAT_VERSION = 1
FORMAT_NAMES = {"tfrecord": "TFRecord", "array_record": "ArrayRecord"}  # in the descriptions

# What each key holds, in the order imagenet_tfrecords.json lists them; its dtype and shape come from the schema.
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


def _description(manifest: dict) -> str:
    fmt = file_format(manifest)
    return (f"Images in the ImageNet layout as {FORMAT_NAMES.get(fmt, fmt)} files of tf.train.Example protos with "
            "the Inception schema, written by build_imagenet_data.py.")


def _split_info(split: str, plan: dict, shards: list[dict], suffix: str) -> dict:
    """One split's counts from its plan and its finished shards (in shard order); `suffix` ends its shard names."""
    lengths = [entry["records"] for entry in shards]
    return {
        "num_records": sum(lengths),
        "num_shards": plan["shards"],
        "complete": len(shards) == plan["shards"],  # false while a build of it is unfinished
        "num_bytes": sum(entry["size"] for entry in shards),
        "shard_lengths": lengths,
        "num_bad_images": sum(len(entry["bad_images"]) for entry in shards),
        "classes_present": plan["classes_present"],
        "file_pattern": f"{split}-?????-of-{plan['shards']:05d}{suffix}",
    }


def _split_shards(manifest: dict) -> dict[str, tuple[dict, list[dict]]]:
    """Each split's plan and its finished shards in shard order, splits by name."""
    return {split: (plan, sorted((e for e in manifest["shards"].values() if e["split"] == split),
                                 key=lambda e: e["index"]))
            for split, plan in sorted(manifest.get("splits", {}).items())}


def file_format(manifest: dict) -> str:
    return manifest["options"].get("output_format", DEFAULT_FILE_FORMAT)  # a manifest older than the option


def dataset_info(manifest: dict, classes: ClassTable) -> dict:
    """The contents of imagenet_tfrecords.json for a directory whose manifest is `manifest`."""
    suffix = FILE_SUFFIXES[file_format(manifest)]
    splits = {split: _split_info(split, plan, shards, suffix) for split, (plan, shards) in _split_shards(manifest).items()}
    options = manifest["options"]
    offset = options["label_offset"]
    return {
        "name": "imagenet_tfrecords",
        "description": _description(manifest),
        "version": __version__,
        "format_version": FORMAT_VERSION,
        "file_format": file_format(manifest),
        "features": {key: {"dtype": RECORD_SCHEMA[key].dtype, "shape": RECORD_SCHEMA[key].shape, "description": text}
                     for key, text in FEATURE_DESCRIPTIONS.items()},
        "num_classes": len(classes.wnids),
        "label_offset": offset,
        "label_range": [offset, offset + len(classes.wnids) - 1],
        "label_convention": LABEL_CONVENTIONS[offset],
        "synsets": list(classes.wnids),  # label L is synsets[L - label_offset]
        "splits": splits,
        "image": dict(sorted(options["image"].items())),  # one order, fresh or read back from manifest.json
        "shuffle_seed": options["shuffle_seed"],
    }


def tfds_info(manifest: dict) -> dict:
    """The contents of TFDS's dataset_info.json: every finished split with its shard lengths and bytes."""
    suffix = FILE_SUFFIXES[file_format(manifest)]
    splits = [tfds_split(split, [e["records"] for e in shards], sum(e["size"] for e in shards), suffix)
              for split, (plan, shards) in _split_shards(manifest).items() if len(shards) == plan["shards"]]
    description = f"{_description(manifest)} Classes, label convention and counts: {INFO_NAME}."
    return tfds_dataset_info(splits, file_format(manifest), description)


def write_dataset_info(output_dir: Path | str, manifest: dict, classes: ClassTable) -> None:
    """imagenet_tfrecords.json, then TFDS's features.json and dataset_info.json, each atomically."""
    output = folder(output_dir)
    output.write(INFO_NAME, json.dumps(dataset_info(manifest, classes), indent=1) + "\n", "the dataset description")
    output.write(TFDS_FEATURES_NAME, features_text(), "the TensorFlow Datasets features")
    output.write(TFDS_INFO_NAME, dataset_info_text(tfds_info(manifest)), "the TensorFlow Datasets description")
