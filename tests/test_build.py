"""The builder end to end: the real CLI on the sample, read back with real TensorFlow."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from conftest import run_build_cli, sample_args, shard_digests
from imagenet_tfrecords.inputs.labels import (
    DEFAULT_LABELS_FILE,
    DEFAULT_METADATA_FILE,
    DEFAULT_VALIDATION_LABELS_FILE,
    load_bounding_boxes,
    load_class_table,
    load_validation_labels,
)
from imagenet_tfrecords.sample import SAMPLE_WNIDS, TRAIN_PER_CLASS, VALIDATION_PER_CLASS
from tfread import decode, raw_features, read_split

CLASSES = load_class_table(DEFAULT_LABELS_FILE, DEFAULT_METADATA_FILE, label_offset=1)
EXPECTED_KINDS = {
    "image/encoded": "bytes_list", "image/format": "bytes_list", "image/filename": "bytes_list",
    "image/height": "int64_list", "image/width": "int64_list", "image/channels": "int64_list",
    "image/colorspace": "bytes_list", "image/class/label": "int64_list", "image/class/synset": "bytes_list",
    "image/class/text": "bytes_list", "image/object/bbox/xmin": "float_list", "image/object/bbox/ymin": "float_list",
    "image/object/bbox/xmax": "float_list", "image/object/bbox/ymax": "float_list",
    "image/object/bbox/label": "int64_list",
}


def expected_synset(filename: str) -> str:
    if filename.startswith("ILSVRC2012_val_"):
        number = int(filename[len("ILSVRC2012_val_"):-len(".JPEG")])
        return load_validation_labels(DEFAULT_VALIDATION_LABELS_FILE)[number - 1]
    return filename.split("_")[0]


def test_shard_names_and_counts(resized_build: Path) -> None:
    names = sorted(p.name for p in resized_build.iterdir() if "-of-" in p.name)
    assert names == [f"train-{i:05d}-of-00004" for i in range(4)] + [f"validation-{i:05d}-of-00002" for i in range(2)]
    assert len(read_split(resized_build, "train")) == len(SAMPLE_WNIDS) * TRAIN_PER_CLASS
    assert len(read_split(resized_build, "validation")) == len(SAMPLE_WNIDS) * VALIDATION_PER_CLASS
    assert not [p for p in resized_build.iterdir() if p.name.endswith(".tmp")]


def test_exact_schema(resized_build: Path) -> None:
    for split in ("train", "validation"):
        assert raw_features(resized_build, split) == EXPECTED_KINDS


@pytest.mark.parametrize("split", ["train", "validation"])
def test_labels_synsets_texts_and_pixels(resized_build: Path, split: str) -> None:
    index = CLASSES.index_of()
    records = read_split(resized_build, split)
    assert len({r["image/class/synset"] for r in records}) == len(SAMPLE_WNIDS)
    for record in records:
        synset = expected_synset(record["image/filename"])
        assert record["image/class/synset"] == synset
        assert record["image/class/label"] == index[synset] + 1
        assert record["image/class/text"] == CLASSES.texts[index[synset]]
        assert (record["image/format"], record["image/colorspace"], record["image/channels"]) == ("JPEG", "RGB", 3)
        pixels = decode(record["image/encoded"])
        assert pixels.shape == (256, 256, 3)
        assert (record["image/height"], record["image/width"]) == (256, 256)


def test_bounding_boxes_of_a_known_image(resized_build: Path, sample) -> None:
    boxes = load_bounding_boxes(sample.bounding_box_file)
    records = {r["image/filename"]: r for r in read_split(resized_build, "train")}
    with_two = [name for name, b in boxes.items() if len(b) == 2]
    assert with_two, "the sample has images with two boxes"
    for name, expected in boxes.items():
        record = records[name]
        got = list(zip(record["image/object/bbox/xmin"], record["image/object/bbox/ymin"],
                       record["image/object/bbox/xmax"], record["image/object/bbox/ymax"]))
        assert len(got) == len(expected)
        for got_box, expected_box in zip(got, expected):
            assert got_box == pytest.approx(expected_box, abs=1e-6)
        assert record["image/object/bbox/label"] == [record["image/class/label"]] * len(expected)
    without = [r for n, r in records.items() if n not in boxes]
    assert without and all(r["image/object/bbox/xmin"] == [] for r in without)


def test_copy_mode_keeps_ordinary_jpegs_byte_identical(copy_build: Path, sample) -> None:
    records = {r["image/filename"]: r for r in read_split(copy_build, "train")}
    special = {p.name for p in sample.special.values()}
    identical = 0
    for class_dir in sample.train_dir.iterdir():
        for path in class_dir.iterdir():
            record = records[path.name]
            if path.name in special and path.name != sample.special["progressive"].name \
                    and path.name != sample.special["large"].name:
                assert record["image/encoded"] != path.read_bytes()
            else:
                assert record["image/encoded"] == path.read_bytes()
                identical += 1
            with Image.open(path) as original:
                assert (record["image/width"], record["image/height"]) == original.size
    assert identical == len(records) - 3


@pytest.mark.parametrize("kind", ["cmyk", "grayscale", "png"])
def test_special_files_become_rgb_jpeg(copy_build: Path, sample, kind: str) -> None:
    path = sample.special[kind]
    record = next(r for r in read_split(copy_build, "train") if r["image/filename"] == path.name)
    assert record["image/encoded"][:3] == b"\xff\xd8\xff"
    pixels = decode(record["image/encoded"])
    assert pixels.shape == (record["image/height"], record["image/width"], 3)
    with Image.open(path) as original:
        reference = original.convert("RGB")
    stored = Image.open(io.BytesIO(record["image/encoded"])).convert("RGB")
    # the colours survive: mean absolute difference of a q90 re-encode stays small
    difference = sum(abs(a - b) for a, b in zip(reference.tobytes(), stored.tobytes())) / len(stored.tobytes())
    assert difference < 6


def test_label_offset_zero(sample, tmp_path: Path) -> None:
    run_build_cli(*sample_args(sample, tmp_path, "--label_offset", "0", "--num_threads", "1"))
    index = CLASSES.index_of()
    for record in read_split(tmp_path, "validation"):
        assert record["image/class/label"] == index[record["image/class/synset"]]


def test_one_and_two_workers_give_identical_shards(sample, resized_build: Path, tmp_path: Path) -> None:
    run_build_cli(*sample_args(sample, tmp_path, "--resize_images", "--num_threads", "1"))
    assert shard_digests(tmp_path) == shard_digests(resized_build)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert {name: entry["sha256"] for name, entry in manifest["shards"].items()} == shard_digests(tmp_path)


def test_shuffled_shards_mix_classes(resized_build: Path) -> None:
    from tfread import shard_files
    import tensorflow as tf

    for path in shard_files(resized_build, "train"):
        synsets = {
            tf.train.Example.FromString(r.numpy()).features.feature["image/class/synset"].bytes_list.value[0]
            for r in tf.data.TFRecordDataset([path])
        }
        assert len(synsets) >= 4, f"{path} holds only {synsets}"


def test_sample_command_of_the_readme(tmp_path: Path) -> None:
    result = run_build_cli("--sample", tmp_path, "--resize_images", "--num_threads", "2")
    assert "validation" in result.stdout and "train" in result.stdout
    records = read_split(tmp_path / "tfrecords", "train")
    assert len(records) == len(SAMPLE_WNIDS) * TRAIN_PER_CLASS


def independent_index(path: Path) -> str:
    """What DALI's tfrecord2idx computes: `<offset> <length + 16>` per record."""
    import struct

    data, offset, lines = path.read_bytes(), 0, []
    while offset < len(data):
        (length,) = struct.unpack_from("<q", data, offset)
        lines.append(f"{offset} {length + 16}\n")
        offset += length + 16
    return "".join(lines)


def test_dali_index_is_written_with_each_shard(resized_build: Path) -> None:
    shards = sorted(p for p in resized_build.iterdir() if "-of-" in p.name)
    indexes = sorted(p.name for p in (resized_build / "idx").iterdir() if not p.name.startswith("."))  # .lock
    assert indexes == [f"{p.name}.idx" for p in shards]
    for shard in shards:
        assert (resized_build / "idx" / f"{shard.name}.idx").read_text() == independent_index(shard)


def test_no_index_writes_none(sample, tmp_path: Path) -> None:
    run_build_cli(*sample_args(sample, tmp_path, "--no_index"))
    assert not (tmp_path / "idx").exists()
