"""imagenet_tfrecords.json describes the output (classes, labels, counts), and README's read-back runs as written.

TensorFlow Datasets' own dataset_info.json and features.json are tests/test_tfds.py's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from conftest import kill_build_after_first_train_shard, run_build_cli, sample_args
from imagenet_tfrecords.output.manifest import DATASET_INFO_FILES, read_manifest
from tfread import INCEPTION_FEATURES, decode, raw_features, read_split, shard_files

README = Path(__file__).resolve().parent.parent / "README.md"
README_SNIPPET = re.compile(r"<!-- readback -->\n```python\n(.*?)```\n<!-- /readback -->", re.S)
README_DATA = "~/.cache/imagenet-tfrecords/sample/tfrecords"  # the directory README reads; the test puts its build there
BOX_SIDES = ("ymin", "xmin", "ymax", "xmax")


def load_info(directory: Path) -> dict:
    return json.loads((directory / "imagenet_tfrecords.json").read_text())


def as_parse_spec(features: dict) -> dict:
    """imagenet_tfrecords.json's features as the spec for tf.io.parse_single_example."""
    def spec(feature: dict):
        dtype = tf.as_dtype(feature["dtype"])
        return tf.io.FixedLenFeature([], dtype) if feature["shape"] == [] else tf.io.VarLenFeature(dtype)
    assert all(feature["shape"] in ([], [None]) for feature in features.values())
    return {key: spec(feature) for key, feature in features.items()}


def test_dataset_info_holds_the_features_labels_and_counts_of_the_build(resized_build: Path) -> None:
    info = load_info(resized_build)
    assert as_parse_spec(info["features"]) == INCEPTION_FEATURES
    assert info["features"].keys() == raw_features(resized_build, "train").keys()  # every key a record has
    assert (info["num_classes"], info["label_offset"], info["label_range"]) == (1000, 1, [1, 1000])
    assert "0 is the background class" in info["label_convention"]
    assert info["image"] == read_manifest(resized_build)["options"]["image"]
    assert sorted(info["splits"]) == ["train", "validation"]
    for split, shards in (("train", 4), ("validation", 2)):
        files = shard_files(resized_build, split)
        records = read_split(resized_build, split)
        assert info["splits"][split] == {
            "num_records": len(records), "num_shards": shards, "complete": True,
            "num_bytes": sum(Path(name).stat().st_size for name in files),
            "shard_lengths": [sum(1 for _ in tf.data.TFRecordDataset(name)) for name in files],
            "num_bad_images": 0, "classes_present": 5, "file_pattern": f"{split}-?????-of-{shards:05d}",
        }
        assert sorted(tf.io.gfile.glob(str(resized_build / info["splits"][split]["file_pattern"]))) == files
        for record in records:
            assert info["synsets"][record["image/class/label"] - info["label_offset"]] == record["image/class/synset"]


def test_dataset_info_lists_every_split_of_the_directory_not_only_this_runs(sample, tmp_path: Path) -> None:
    output = tmp_path / "out"
    options = ["--train_shards", "4", "--validation_shards", "2", "--label_offset", "0"]
    # validation is built first: it is finished, train is cut short
    kill_build_after_first_train_shard(sample_args(sample, output, "--label_offset", "0", "--num_threads", "1"), output)
    stale = [output / f".{name}.0123456789abcdef.tmp" for name in DATASET_INFO_FILES]  # left by writers killed mid-write
    for path in stale:
        path.write_text("{")
    run_build_cli("--validation_directory", sample.validation_dir, "--output_directory", output, *options)
    assert not any(path.exists() for path in stale)
    info, manifest = load_info(output), read_manifest(output)
    assert (info["label_offset"], info["label_range"]) == (0, [0, 999])
    assert info["label_convention"].startswith("labels 0..num_classes-1")
    finished = sorted((e["index"], e["records"]) for e in manifest["shards"].values() if e["split"] == "train")
    assert 0 < len(finished) < 4
    train = info["splits"]["train"]
    assert (train["complete"], train["shard_lengths"]) == (False, [records for _, records in finished])
    assert train["num_records"] == sum(train["shard_lengths"])
    assert info["splits"]["validation"]["complete"] and info["splits"]["validation"]["num_records"] == 20
    run_build_cli("--train_directory", sample.train_dir, "--output_directory", output, *options)
    info = load_info(output)
    assert [(info["splits"][s]["complete"], info["splits"][s]["num_records"]) for s in ("train", "validation")] == [
        (True, 100), (True, 20)]
    for record in read_split(output, "train"):
        assert info["synsets"][record["image/class/label"]] == record["image/class/synset"]


def test_readme_read_back_runs_as_written(resized_build: Path, capsys) -> None:
    """README's snippet, run on a build of the sample: the full schema, parse, and NumPy batches for JAX."""
    found = README_SNIPPET.search(README.read_text())
    assert found, "README.md lacks the read-back snippet between <!-- readback --> and <!-- /readback -->"
    snippet = found[1]
    assert README_DATA in snippet
    namespace: dict = {"__name__": "readme"}
    exec(compile(snippet.replace(README_DATA, str(resized_build)), str(README), "exec"), namespace)
    assert capsys.readouterr().out.splitlines() == ["(32, 224, 224, 3) float32 (32,) int64"] * 3 + [
        "100 train images, 1000 classes"]
    assert namespace["FEATURES"] == INCEPTION_FEATURES
    records = {r["image/filename"]: r for r in read_split(resized_build, "train")}
    for serialized in tf.data.TFRecordDataset(shard_files(resized_build, "train")):
        parsed = namespace["parse"](serialized)
        record = records.pop(parsed["filename"].numpy().decode())
        assert np.array_equal(parsed["image"].numpy(), decode(record["image/encoded"]))
        assert parsed["label"].numpy() == record["image/class/label"] - 1
        boxes = np.array([record[f"image/object/bbox/{side}"] for side in BOX_SIDES], np.float32).T.reshape(-1, 4)
        assert np.array_equal(parsed["boxes"].numpy(), boxes)
    assert not records
    labels = np.concatenate([batch_labels for _, batch_labels in namespace["dataset"].as_numpy_iterator()])
    expected = sorted(r["image/class/label"] - 1 for r in read_split(resized_build, "train"))
    assert len(labels) == 96 and set(labels) <= set(expected)
