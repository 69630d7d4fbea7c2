"""DALI index files: equal to an independent `tfrecord2idx`, seekable, and written for foreign shards."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import tensorflow as tf

from conftest import run_build_cli
from tfread import INCEPTION_FEATURES, shard_files


def tfrecord2idx(path: Path) -> str:
    """DALI's `tools/tfrecord2idx` (docs/imagenet-facts.md, "DALI index"): walk the length fields, no CRC checks."""
    lines = []
    with open(path, "rb") as f:
        while True:
            current = f.tell()
            length_bytes = f.read(8)
            if not length_bytes:
                break
            f.read(4)
            (length,) = struct.unpack("q", length_bytes)
            f.read(length)
            f.read(4)
            lines.append(f"{current} {f.tell() - current}\n")
    return "".join(lines)


def all_shards(directory: Path) -> list[Path]:
    return [Path(p) for split in ("train", "validation") for p in shard_files(directory, split)]


def test_builder_index_equals_tfrecord2idx(resized_build: Path) -> None:
    for shard in all_shards(resized_build):
        assert (resized_build / "idx" / f"{shard.name}.idx").read_text() == tfrecord2idx(shard)


def test_index_seeks_straight_to_record_k(resized_build: Path) -> None:
    shard = all_shards(resized_build)[0]
    index = (resized_build / "idx" / f"{shard.name}.idx").read_text()
    entries = [tuple(map(int, line.split())) for line in index.splitlines()]
    expected = [tf.io.parse_single_example(r, INCEPTION_FEATURES) for r in tf.data.TFRecordDataset(str(shard))]
    assert len(entries) == len(expected) > 3
    with open(shard, "rb") as f:
        for k in (len(entries) - 1, 0, len(entries) // 2):
            offset, size = entries[k]
            f.seek(offset)
            framed = f.read(size)
            (length,) = struct.unpack("<Q", framed[:8])
            assert length + 16 == size
            example = tf.train.Example.FromString(framed[12:-4]).features.feature
            assert example["image/filename"].bytes_list.value[0] == expected[k]["image/filename"].numpy()
            assert example["image/class/label"].int64_list.value[0] == expected[k]["image/class/label"].numpy()


def write_tf_shards(directory: Path, count: int) -> list[Path]:
    """Shards from real tf.io.TFRecordWriter and tf.train.Example, of records of varied sizes."""
    directory.mkdir()
    paths = []
    for s in range(count):
        path = directory / f"data-{s:05d}-of-{count:05d}"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for k in range(5 + s):
                example = tf.train.Example(features=tf.train.Features(feature={
                    "image/encoded": tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[os.urandom(37 * k * k + s)])),
                    "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[k])),
                }))
                writer.write(example.SerializeToString())
        paths.append(path)
    return paths


def test_write_index_for_shards_of_tensorflows_writer(tmp_path: Path) -> None:
    shards = write_tf_shards(tmp_path / "foreign", 3)
    (tmp_path / "foreign" / "README").write_text("not a shard")
    result = run_build_cli("--write_index", tmp_path / "foreign", check=False)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "foreign" / "idx").iterdir()) == [f"{p.name}.idx" for p in shards]
    for shard in shards:
        assert (tmp_path / "foreign" / "idx" / f"{shard.name}.idx").read_text() == tfrecord2idx(shard)


def test_write_index_into_another_directory_matches_the_builder(resized_build: Path, tmp_path: Path) -> None:
    result = run_build_cli("--write_index", resized_build, "--index_directory", tmp_path / "elsewhere", check=False)
    assert result.returncode == 0, result.stderr
    for shard in all_shards(resized_build):
        assert (tmp_path / "elsewhere" / f"{shard.name}.idx").read_text() == \
               (resized_build / "idx" / f"{shard.name}.idx").read_text()
    assert not [p for p in (tmp_path / "elsewhere").iterdir() if p.name.endswith(".tmp")]


def test_write_index_refuses_a_corrupt_shard(tmp_path: Path) -> None:
    shards = write_tf_shards(tmp_path / "foreign", 2)
    second_record = int(tfrecord2idx(shards[1]).splitlines()[1].split()[0])
    run_build_cli("--write_index", tmp_path / "foreign")  # indexed while intact: its index must not outlive that
    data = bytearray(shards[1].read_bytes())
    data[second_record + 20] ^= 0xFF
    shards[1].write_bytes(data)
    result = run_build_cli("--write_index", tmp_path / "foreign", check=False)
    assert result.returncode == 1
    expected = f"{shards[1].name}: offset {second_record}: data CRC mismatch (corrupt record); no index written"
    assert expected in result.stderr
    assert result.stdout.strip().endswith("; 1 shard is corrupt")
    assert sorted(p.name for p in (tmp_path / "foreign" / "idx").iterdir()) == [f"{shards[0].name}.idx"]


def test_write_index_without_shards_is_one_line(tmp_path: Path) -> None:
    result = run_build_cli("--write_index", tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path}: no shard files (NAME-00000-of-00010) to index"


def test_dali_reads_a_shard_on_the_cpu_with_our_index(resized_build: Path) -> None:
    """DALI's own TFRecord reader, fed our index, yields every record in order."""
    try:
        from nvidia.dali import fn, pipeline_def
        import nvidia.dali.tfrecord as tfrec
    except ImportError as exc:
        pytest.skip(f"nvidia-dali is not installed ({exc}); pip install nvidia-dali-cuda120 to run this test")
    shard = all_shards(resized_build)[1]
    expected = [tf.io.parse_single_example(r, INCEPTION_FEATURES) for r in tf.data.TFRecordDataset(str(shard))]

    @pipeline_def(batch_size=len(expected), num_threads=1, device_id=None)  # device_id None: CPU only
    def pipeline():
        record = fn.readers.tfrecord(
            path=[str(shard)], index_path=[str(resized_build / "idx" / f"{shard.name}.idx")], random_shuffle=False,
            features={"image/filename": tfrec.FixedLenFeature((), tfrec.string, ""),
                      "image/class/label": tfrec.FixedLenFeature([1], tfrec.int64, -1),
                      "image/encoded": tfrec.FixedLenFeature((), tfrec.string, "")})
        return record["image/filename"], record["image/class/label"], record["image/encoded"]

    dali = pipeline()
    dali.build()
    filenames, labels, images = dali.run()
    assert [bytes(filenames.at(k)) for k in range(len(expected))] == [e["image/filename"].numpy() for e in expected]
    assert [int(labels.at(k)[0]) for k in range(len(expected))] == [int(e["image/class/label"]) for e in expected]
    assert [bytes(images.at(k)) for k in range(len(expected))] == [e["image/encoded"].numpy() for e in expected]
