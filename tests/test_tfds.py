"""The output directory is a TensorFlow Datasets directory as built: `tfds.builder_from_directory` loads it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from conftest import kill_build_after_first_train_shard, run_build_cli, sample_args
from imagenet_tfrecords.output.manifest import read_manifest
from tfread import decode, read_split

# What TFDS adds when it writes the info of a directory it read (its read-only builder), not ours to write.
ADDED_ON_REWRITE = ("moduleName", "redistributionInfo")


def _flat(example: dict, prefix: str = "") -> dict:
    """A TFDS example (nested dicts of NumPy values) by the record's flat keys: image/class/label, ..."""
    flat = {}
    for name, value in example.items():
        key = f"{prefix}{name}"
        flat.update(_flat(value, key + "/") if isinstance(value, dict) else {key: value})
    return flat


def _shard_lengths(manifest: dict, split: str) -> list[int]:
    return [e["records"] for e in sorted((e for e in manifest["shards"].values() if e["split"] == split),
                                         key=lambda e: e["index"])]


def _assert_same(example: dict, record: dict, decode_image: Callable[[bytes], np.ndarray] = decode) -> None:
    """A TFDS example (flat keys) holds the record tf.data parses: the image decoded, every other key as stored."""
    assert example.keys() == record.keys()
    for key, value in example.items():
        expected = record[key]
        if key == "image/encoded":
            assert value.dtype == np.uint8 and value.shape == (record["image/height"], record["image/width"], 3)
            assert np.array_equal(value, decode_image(expected))
        elif isinstance(value, np.ndarray):
            assert value.tolist() == pytest.approx(expected), key  # boxes, one value per box
        else:
            assert (value.decode() if isinstance(value, bytes) else value) == expected, key


@pytest.mark.parametrize("split", ["train", "validation"])
def test_tfds_reads_every_record_with_its_features(resized_build: Path, split: str) -> None:
    builder = tfds.builder_from_directory(str(resized_build))
    examples = [_flat(e) for e in tfds.as_numpy(builder.as_dataset(split=split))]
    records = {r["image/filename"]: r for r in read_split(resized_build, split)}  # the same records by tf.data
    assert sorted(e["image/filename"].decode() for e in examples) == sorted(records)
    for example in examples:
        _assert_same(example, records[example["image/filename"].decode()])
    assert any(len(e["image/object/bbox/xmin"]) for e in examples) or split == "validation"  # boxes were read


def test_tfds_split_sizes_and_shard_lengths_are_the_manifests(resized_build: Path) -> None:
    builder = tfds.builder_from_directory(str(resized_build))
    manifest = read_manifest(resized_build)
    assert sorted(builder.info.splits) == ["train", "validation"]
    for split in ("train", "validation"):
        info = builder.info.splits[split]
        assert info.shard_lengths == _shard_lengths(manifest, split)
        assert info.num_examples == sum(info.shard_lengths) == manifest["splits"][split]["images"]
        assert info.num_bytes == sum(e["size"] for e in manifest["shards"].values() if e["split"] == split)
        assert [Path(f).name for f in info.filenames] == sorted(
            e["name"] for e in manifest["shards"].values() if e["split"] == split)
    assert builder.info.file_format.value == "tfrecord"
    decoded = builder.info.features["image"]["encoded"]
    assert isinstance(decoded, tfds.features.Image) and decoded.shape == (None, None, 3)


def test_the_two_files_are_as_tfds_writes_them(resized_build: Path, tmp_path: Path) -> None:
    builder = tfds.builder_from_directory(str(resized_build))
    builder.info.write_to_directory(tmp_path)
    assert (tmp_path / "features.json").read_bytes() == (resized_build / "features.json").read_bytes()
    rewritten = json.loads((tmp_path / "dataset_info.json").read_text())
    for key in ADDED_ON_REWRITE:
        rewritten.pop(key, None)
    assert rewritten == json.loads((resized_build / "dataset_info.json").read_text())


def test_verify_knows_every_file_tfds_needs(resized_build: Path) -> None:
    result = run_build_cli("--verify", resized_build, "--json", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not json.loads(result.stdout)["problems"]


def test_an_unfinished_split_is_left_out_until_it_is_finished(sample, tmp_path: Path) -> None:
    """TFDS names a split's files from its shard count: a split with shards missing is not listed."""
    slow = ("--resize_images", "--new_height", "1500", "--new_width", "1500", "--train_shards", "10")
    args = sample_args(sample, tmp_path, *slow, "--num_threads", "2")
    kill_build_after_first_train_shard(args, tmp_path)  # validation is built first: finished, train is not
    run_build_cli("--validation_directory", sample.validation_dir, "--output_directory", tmp_path,
                  "--validation_shards", "2", *slow)
    assert sorted(tfds.builder_from_directory(str(tmp_path)).info.splits) == ["validation"]
    run_build_cli(*args)
    builder = tfds.builder_from_directory(str(tmp_path))
    assert builder.info.splits["train"].num_examples == 100
    assert builder.info.splits["train"].shard_lengths == _shard_lengths(read_manifest(tmp_path), "train")


def test_array_record_output_is_a_tfds_data_source(sample, resized_build: Path, tmp_path: Path) -> None:
    """ArrayRecord shards: TFDS reads them by index (`as_data_source`; its `as_dataset` has no ArrayRecord reader)."""
    pytest.importorskip("array_record")
    run_build_cli(*sample_args(sample, tmp_path, "--resize_images", "--output_format", "array_record"))
    builder = tfds.builder_from_directory(str(tmp_path))
    assert builder.info.file_format.value == "array_record"
    manifest = read_manifest(tmp_path)
    for split in ("train", "validation"):
        assert builder.info.splits[split].shard_lengths == _shard_lengths(manifest, split)
        source = builder.as_data_source(split=split)
        examples = [_flat(source[i]) for i in range(len(source))]
        records = {r["image/filename"]: r for r in read_split(resized_build, split)}  # the same build as TFRecord
        assert sorted(e["image/filename"].decode() for e in examples) == sorted(records)
        decode_np = builder.info.features["image"]["encoded"].decode_example_np  # OpenCV or PIL, not TensorFlow
        for example in examples:
            _assert_same(example, records[example["image/filename"].decode()], decode_np)
    assert run_build_cli("--verify", tmp_path, check=False).returncode == 0
