"""Shard counts fit the data when none is given: ImageNet keeps 1024/128, small sets get fewer shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_build_cli
from test_bad_input import assert_one_line_error
from imagenet_tfrecords.plan.shard_count import MIN_IMAGES_PER_SHARD, fitted_shard_count
from tfread import read_split


@pytest.mark.parametrize(("split", "images", "shards"), [
    ("train", 1_281_167, 1024), ("validation", 50_000, 128),  # ImageNet: the Inception defaults exactly
    ("train", 128_116, 1024), ("validation", 12_799, 127),  # large enough: capped at the defaults
    ("train", 9_469, 94), ("validation", 250, 2),  # one shard per 100 images
    ("train", 100, 1), ("validation", 20, 1), ("validation", 1, 1),  # the sample, and smaller: one shard
])
def test_fitted_shard_count(split: str, images: int, shards: int) -> None:
    assert fitted_shard_count(split, images) == shards
    assert shards == 1 or images // shards >= MIN_IMAGES_PER_SHARD


def test_build_without_shard_flags_fits_the_sample_and_resumes(sample, tmp_path: Path) -> None:
    args = ["--train_directory", sample.train_dir, "--validation_directory", sample.validation_dir,
            "--output_directory", tmp_path, "--num_threads", "1"]
    first = run_build_cli(*args, check=False)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in tmp_path.glob("*-of-*")) == ["train-00000-of-00001", "validation-00000-of-00001"]
    assert len(read_split(tmp_path, "train")) == 100 and len(read_split(tmp_path, "validation")) == 20
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert "shards" not in manifest["options"]  # a count is a split's plan, not an option of the whole build
    assert {split: plan["shards"] for split, plan in manifest["splits"].items()} == {"train": 1, "validation": 1}
    again = run_build_cli(*args, check=False)
    assert again.returncode == 0, again.stderr
    resumed = {line.split()[0]: line.split()[4] for line in again.stdout.splitlines()[1:3]}
    assert resumed == {"validation": "1", "train": "1"}  # every shard kept: same data, same fitted counts


def test_explicit_shard_counts_are_kept(sample, tmp_path: Path) -> None:
    run_build_cli("--validation_directory", sample.validation_dir, "--output_directory", tmp_path,
                  "--validation_shards", "3", "--num_threads", "1")
    assert sorted(p.name for p in tmp_path.glob("*-of-*")) == [f"validation-0000{i}-of-00003" for i in range(3)]


def test_splits_built_one_run_at_a_time_share_the_directory(sample, tmp_path: Path) -> None:
    run_build_cli("--validation_directory", sample.validation_dir, "--output_directory", tmp_path, "--num_threads", "1")
    run_build_cli("--train_directory", sample.train_dir, "--output_directory", tmp_path, "--num_threads", "1")
    assert sorted(p.name for p in tmp_path.glob("*-of-*")) == ["train-00000-of-00001", "validation-00000-of-00001"]


def test_a_split_keeps_its_count_when_the_data_grows(sample, tmp_path: Path) -> None:
    train, output = tmp_path / "train", tmp_path / "out"
    shutil.copytree(sample.train_dir, train)
    run_build_cli("--train_directory", train, "--output_directory", output, "--num_threads", "1")
    for image in sorted(train.glob("*/*.JPEG")):  # 100 more images: a new directory would get 2 shards
        shutil.copy(image, image.with_name(image.stem + "_copy.JPEG"))
    run_build_cli("--train_directory", train, "--output_directory", output, "--num_threads", "1")
    assert sorted(p.name for p in output.glob("*-of-*")) == ["train-00000-of-00001"]  # nothing mixed in
    assert len(read_split(output, "train")) == 200  # the shard was rebuilt from the grown data


def test_a_count_given_once_need_not_be_repeated(sample, tmp_path: Path) -> None:
    validation = ["--validation_directory", sample.validation_dir, "--output_directory", tmp_path, "--num_threads", "1"]
    run_build_cli(*validation, "--validation_shards", "2")
    run_build_cli("--train_directory", sample.train_dir, "--output_directory", tmp_path, "--num_threads", "1",
                  "--train_shards", "4")
    again = run_build_cli(*validation)  # no flag: the split keeps its 2 shards and resumes
    assert again.stdout.splitlines()[1].split()[:5] == ["validation", "20", "0", "2", "2"]
    result = run_build_cli(*validation, "--validation_shards", "3", check=False)
    assert_one_line_error(result, str(tmp_path), "holds the validation split in 2 shard(s), not the 3 of "
                          "--validation_shards", "--validation_shards 2")
    assert sorted(p.name for p in tmp_path.glob("validation-*")) == [f"validation-0000{i}-of-00002" for i in range(2)]
