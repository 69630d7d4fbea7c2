"""ImageNet-21k: a fall11_whole.tar-shaped tar of class tars builds with `--labels_file imagenet21k`."""

from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path

import pytest

from conftest import run_build_cli
from ilsvrc_archives import tar_bytes
from imagenet_tfrecords.inputs.labels import (DEFAULT_LABELS_FILE, DEFAULT_METADATA_FILE, IMAGENET21K, NOT_IN_FALL11,
                                       imagenet21k_wnids, load_texts, load_wnids)
from imagenet_tfrecords.sample import _load_photos, make_photo
from imagenet_tfrecords.plan.shard_count import IMAGENET_IMAGES, IMAGENET_SHARDS, fitted_shard_count
from test_bad_input import assert_one_line_error
from tfread import read_split

CLASSES = 300  # class tars in the made tar, spread over the whole 21k list
IMAGES_PER_CLASS = 4
FALL11_IMAGES = 14_197_122  # images in fall11_whole.tar


@pytest.fixture(scope="module")
def fall11_tar(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """A tar of <wnid>.tar class tars of real JPEGs, as fall11_whole.tar; and each image's bytes by name."""
    rng, photos = random.Random(21), _load_photos()
    wnids = imagenet21k_wnids()
    chosen = wnids[:: len(wnids) // CLASSES][:CLASSES]
    images: dict[str, bytes] = {}
    class_tars = []
    for wnid in chosen:
        members = []
        for n in range(IMAGES_PER_CLASS):
            buffer = io.BytesIO()
            make_photo(photos, rng, (48, 36)).save(buffer, "JPEG", quality=85)
            name = f"{wnid}_{rng.randrange(1, 20000)}{n}.JPEG"
            members.append((name, buffer.getvalue()))
            images[name] = buffer.getvalue()
        class_tars.append((f"{wnid}.tar", tar_bytes(members)))
    path = tmp_path_factory.mktemp("fall11") / "fall11_whole.tar"
    path.write_bytes(tar_bytes(class_tars))
    return path, images


@pytest.fixture(scope="module")
def build_21k(fall11_tar, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("out21k")
    run_build_cli("--train_tar", fall11_tar[0], "--labels_file", IMAGENET21K, "--output_directory", output,
                  "--num_threads", "2")
    return output


def test_the_21k_labels_are_the_metadata_but_teddy_bear() -> None:
    wnids = imagenet21k_wnids()
    metadata = [line.split("\t")[0] for line in DEFAULT_METADATA_FILE.read_text().splitlines()]
    assert len(wnids) == len(set(wnids)) == len(metadata) - len(NOT_IN_FALL11)
    assert wnids == sorted(set(metadata) - NOT_IN_FALL11)
    assert set(load_wnids(DEFAULT_LABELS_FILE)) - set(wnids) == NOT_IN_FALL11  # every other ILSVRC-2012 class


def test_a_file_named_imagenet21k_is_read_as_a_labels_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path(IMAGENET21K).write_text("n02119789\nn01440764\n")
    assert load_wnids(Path(IMAGENET21K)) == ["n02119789", "n01440764"]


def test_every_record_has_the_label_synset_and_text_of_its_class_tar(fall11_tar, build_21k: Path) -> None:
    wnids = imagenet21k_wnids()
    texts = dict(zip(wnids, load_texts(DEFAULT_METADATA_FILE, wnids)))
    records = read_split(build_21k, "train")
    _, images = fall11_tar
    assert sorted(r["image/filename"] for r in records) == sorted(images)
    with tarfile.open(fall11_tar[0]) as outer:
        tar_of = {name: member.name.removesuffix(".tar") for member in outer
                  for name in tarfile.open(fileobj=outer.extractfile(member)).getnames()}
    for record in records:
        wnid = tar_of[record["image/filename"]]
        assert record["image/class/synset"] == wnid
        assert record["image/class/label"] == wnids.index(wnid) + 1  # Inception's convention: 1..21,841
        assert record["image/class/text"] == texts[wnid]
        assert record["image/encoded"] == images[record["image/filename"]]  # copy mode: the member's bytes


def test_the_shard_count_is_the_rules_and_the_dataset_info_has_21841_classes(fall11_tar, build_21k: Path) -> None:
    shards = fitted_shard_count("train", CLASSES * IMAGES_PER_CLASS)
    names = [f"train-{i:05d}-of-{shards:05d}" for i in range(shards)]
    assert sorted(p.name for p in build_21k.glob("train-*")) == names
    info = json.loads((build_21k / "imagenet_tfrecords.json").read_text())
    assert info["num_classes"] == 21_841 and info["synsets"] == imagenet21k_wnids()
    assert info["label_range"] == [1, 21_841] and info["splits"]["train"]["complete"]


def test_the_full_21k_set_gets_imagenet_sized_shards() -> None:
    shards = fitted_shard_count("train", FALL11_IMAGES)
    per_shard = IMAGENET_IMAGES["train"] / IMAGENET_SHARDS["train"]
    assert shards >= 10_000
    assert per_shard <= FALL11_IMAGES / shards <= per_shard + 1  # what an ImageNet shard holds, ~1,252 images


def test_the_1k_labels_file_names_the_first_class_tar_it_lacks(fall11_tar, tmp_path: Path) -> None:
    result = run_build_cli("--train_tar", fall11_tar[0], "--output_directory", tmp_path, check=False)
    first = min(name for name in tarfile.open(fall11_tar[0]).getnames() if name.removesuffix(".tar")
                not in load_wnids(DEFAULT_LABELS_FILE))
    assert_one_line_error(result, f"{fall11_tar[0]}[{first}]", "--labels_file")


def test_the_21k_build_verifies(build_21k: Path) -> None:
    result = run_build_cli("--verify", build_21k, "--json", check=False)
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"], report["problems"]
    assert report["splits"]["train"]["classes"] == CLASSES
