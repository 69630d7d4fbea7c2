"""`--output_format array_record`: the same records as the TFRecord build, in ArrayRecord shards that Grain and
TensorFlow Datasets read with random access; resume, --verify, buckets and the missing-package line as for TFRecord."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from imagenet_tfrecords.engines import dask_shipping
from imagenet_tfrecords.errors import UserError

from conftest import kill_build_after_first_train_shard, run_build_cli, sample_args, shard_digests
from dask_cluster import dask_cluster
from test_bad_input import assert_one_line_error
from test_buckets import environment, fetch
from tfread import shard_files

pytest.importorskip("array_record")
from array_record.python import array_record_data_source  # noqa: E402

FORMAT = ("--output_format", "array_record")
SPLITS = {"train": 4, "validation": 2}
INSTALL = 'pip install "imagenet-tfrecords[array_record]"'


def ar_shards(directory: Path, split: str) -> list[str]:
    return sorted(str(p) for p in Path(directory).glob(f"{split}-*-of-*.array_record"))


def tfrecord_payloads(shard: str) -> list[bytes]:
    return [record.numpy() for record in tf.data.TFRecordDataset([shard])]


@pytest.fixture(scope="module")
def array_record_build(sample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample built as `copy_build` is, as ArrayRecord shards."""
    output = tmp_path_factory.mktemp("array_record")
    run_build_cli(*sample_args(sample, output, "--num_threads", "2", *FORMAT))
    return output


def test_the_shards_are_named_as_planned_with_the_suffix_and_have_no_dali_index(array_record_build: Path) -> None:
    names = sorted(p.name for p in array_record_build.iterdir() if "-of-" in p.name)
    assert names == [f"{split}-{i:05d}-of-{n:05d}.array_record" for split, n in SPLITS.items() for i in range(n)]
    assert not (array_record_build / "idx").exists()


def test_grain_reads_the_same_records_as_the_tfrecord_build_in_random_order(array_record_build: Path,
                                                                            copy_build: Path) -> None:
    grain = pytest.importorskip("grain")
    for split, count in SPLITS.items():
        tfrecords = [p for p in shard_files(copy_build, split) if not p.endswith(".array_record")]
        assert len(tfrecords) == len(ar_shards(array_record_build, split)) == count
        expected = []
        for tfrecord, shard in zip(tfrecords, ar_shards(array_record_build, split), strict=True):
            payloads = tfrecord_payloads(tfrecord)
            source = grain.sources.ArrayRecordDataSource([shard])
            order = list(range(len(payloads)))
            random.Random(7).shuffle(order)
            assert len(source) == len(payloads)
            assert {i: source[i] for i in order} == dict(enumerate(payloads))  # each shard, record for record
            expected += payloads
        whole = array_record_data_source.ArrayRecordDataSource(ar_shards(array_record_build, split))
        order = list(range(len(expected)))
        random.Random(11).shuffle(order)
        assert len(whole) == len(expected)
        assert [whole[i] for i in order] == [expected[i] for i in order]
        example = tf.train.Example.FromString(whole[order[0]])
        assert example.features.feature["image/format"].bytes_list.value == [b"JPEG"]


def test_tfds_reads_it_as_a_data_source(array_record_build: Path) -> None:
    tfds = pytest.importorskip("tensorflow_datasets")
    builder = tfds.builder_from_directory(str(array_record_build))
    for split in SPLITS:
        records = [whole for shard in ar_shards(array_record_build, split)
                   for whole in array_record_data_source.ArrayRecordDataSource([shard])]
        source = builder.as_data_source(split)
        assert len(source) == len(records)
        for i in random.Random(3).sample(range(len(records)), 5):
            label = tf.train.Example.FromString(records[i]).features.feature["image/class/label"].int64_list.value[0]
            assert int(source[i]["image"]["class"]["label"]) == label


def test_kill_9_and_resume_gives_the_same_shards(sample, array_record_build: Path, tmp_path: Path) -> None:
    args = sample_args(sample, tmp_path, "--num_threads", "1", *FORMAT)
    done = kill_build_after_first_train_shard(args, tmp_path)
    assert done and all(name.endswith(".array_record") for name in done)
    result = run_build_cli(*args)
    assert "resuming" in result.stderr
    assert shard_digests(tmp_path) == shard_digests(array_record_build)


def test_verify_passes_and_finds_a_damaged_byte(array_record_build: Path, tmp_path: Path) -> None:
    result = run_build_cli("--verify", array_record_build)
    assert "OK: every check holds" in result.stdout
    assert "no DALI indexes to check" in result.stdout
    damaged = shutil.copytree(array_record_build, tmp_path / "out")
    shard = damaged / "train-00001-of-00004.array_record"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = run_build_cli("--verify", damaged, check=False)
    assert result.returncode == 1
    assert "train-00001-of-00004.array_record" in result.stdout


def test_another_format_in_the_same_directory_is_refused(sample, array_record_build: Path) -> None:
    result = run_build_cli(*sample_args(sample, array_record_build), check=False)
    assert_one_line_error(result, '--output_format was "array_record", now "tfrecord"')


def test_write_index_of_array_record_shards_is_refused(array_record_build: Path) -> None:
    result = run_build_cli("--write_index", array_record_build, check=False)
    assert_one_line_error(result, "ArrayRecord shards index their own records")


def test_a_missing_array_record_package_is_one_line(sample, tmp_path: Path) -> None:
    shim = tmp_path / "shim" / "array_record"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('array_record is not installed (test shim)')\n")
    env = {**os.environ, "PYTHONPATH": str(shim.parent)}
    result = run_build_cli(*sample_args(sample, tmp_path / "out", *FORMAT), check=False, env=env)
    assert_one_line_error(result, "--output_format array_record needs the array-record package", INSTALL)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*-of-*"))


def test_a_build_into_a_bucket_gives_the_same_bytes(sample, array_record_build: Path, s3_server,
                                                    tmp_path: Path) -> None:
    fs, bucket = s3_server.fs, s3_server.new_bucket()
    out = f"s3://{bucket}/out"
    env = environment(s3_server)
    run_build_cli(*sample_args(sample, out, *FORMAT), env=env)
    fetched = fetch(fs, out, tmp_path / "fetched")
    assert shard_digests(fetched) == shard_digests(array_record_build) != {}
    verified = run_build_cli("--verify", out, env=env)
    assert "OK: every check holds" in verified.stdout


class _Versions:
    """A Dask client's `get_versions`, for workers with the given packages."""

    def __init__(self, workers: dict[str, dict[str, str]]) -> None:
        self.workers = workers

    def get_versions(self, check: bool, packages: list[str]) -> dict:
        here = {name: "1" for name in packages}
        return {"client": {"packages": here},
                "workers": {address: {"packages": {name: have.get(name) for name in packages}}
                            for address, have in self.workers.items()}}


def test_dask_workers_must_have_array_record_for_that_format() -> None:
    everything = {name: "1" for name in dask_shipping.WORKER_DEPENDENCIES}
    client = _Versions({"tcp://10.0.0.1:1": everything})
    dask_shipping.check_dependencies(client)  # TFRecord output needs no array-record
    with pytest.raises(UserError, match=r"tcp://10.0.0.1:1 cannot find array-record.*pip install 'array-record>=0.8'"):
        dask_shipping.check_dependencies(client, "array_record")
    dask_shipping.check_dependencies(_Versions({"tcp://10.0.0.1:1": {**everything, "array-record": "1"}}),
                                     "array_record")


def test_a_dask_cluster_build_gives_the_same_shards(sample, array_record_build: Path, tmp_path: Path) -> None:
    """A real scheduler and two workers on 127.0.0.1 write the same ArrayRecord bytes as the local build."""
    output = tmp_path / "out"
    with dask_cluster(tmp_path / "cluster") as cluster:
        run_build_cli(*sample_args(sample, output, *FORMAT, "--scheduler", cluster.address), timeout=180)
    assert shard_digests(output) == shard_digests(array_record_build) and len(shard_digests(output)) == 6
    assert not (output / "idx").exists()
