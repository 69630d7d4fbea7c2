"""The shard plan is data: deterministic, balanced, shuffled, independent of listing order."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from imagenet_tfrecords.errors import UserError
from imagenet_tfrecords.images.prepare import ImageOptions
from imagenet_tfrecords.inputs.labels import ClassTable
from imagenet_tfrecords.plan.shards import plan_split, shard_bounds, shard_name, shuffle_order
from imagenet_tfrecords.inputs.split_images import SplitImages

WNIDS = tuple(f"n{i:08d}" for i in range(10))
CLASSES = ClassTable(WNIDS, tuple(f"class {i}" for i in range(10)))


def split_images(per_class: int = 100) -> SplitImages:
    names = [f"{w}/{w}_{i}.JPEG" for w in WNIDS for i in range(per_class)]
    classes = np.repeat(np.arange(len(WNIDS), dtype=np.int32), per_class)
    return SplitImages(Path("/data/train"), names, classes)


def test_shard_names_follow_the_inception_pattern() -> None:
    assert shard_name("train", 0, 1024) == "train-00000-of-01024"
    assert shard_name("validation", 127, 128) == "validation-00127-of-00128"


def test_imagenet_sized_bounds_are_balanced() -> None:
    sizes = np.diff(shard_bounds(1_281_167, 1024))
    assert sizes.sum() == 1_281_167 and set(sizes.tolist()) == {1251, 1252}
    assert set(np.diff(shard_bounds(50_000, 128)).tolist()) == {390, 391}


def test_order_is_a_permutation_that_ignores_listing_order() -> None:
    names = split_images().names
    order = shuffle_order(names)
    assert sorted(order.tolist()) == list(range(len(names)))
    shuffled = names[:]
    random.Random(7).shuffle(shuffled)
    assert [names[i] for i in order] == [shuffled[i] for i in shuffle_order(shuffled)]
    assert [names[i] for i in order] != [names[i] for i in shuffle_order(names, seed=1)]


def test_every_shard_mixes_classes_and_every_image_is_planned_once() -> None:
    images = split_images()
    plan = plan_split("train", images, 10)
    seen = []
    for spec in plan.specs(CLASSES, {}, Path("/out"), ImageOptions()):
        synsets = {item.synset for item in spec.items}
        assert len(synsets) >= 8
        seen.extend(item.path for item in spec.items)
        assert len(spec.items) == 100
    assert sorted(seen) == sorted(str(images.root / n) for n in images.names)


def test_specs_carry_labels_text_and_boxes() -> None:
    images = split_images(per_class=2)
    boxes = {"n00000003_1.JPEG": [(0.1, 0.2, 0.3, 0.4)]}
    items = [i for s in plan_split("train", images, 2).specs(CLASSES, boxes, Path("/o"), ImageOptions()) for i in s.items]
    item = next(i for i in items if i.filename == "n00000003_1.JPEG")
    assert (item.label, item.synset, item.text, item.boxes) == (4, "n00000003", "class 3", ((0.1, 0.2, 0.3, 0.4),))
    assert item.path == "/data/train/n00000003/n00000003_1.JPEG"


def test_digest_changes_with_content_and_options() -> None:
    plan = plan_split("train", split_images(per_class=2), 2)
    spec = plan.spec(0, CLASSES, {}, Path("/o"), ImageOptions())
    assert spec.digest() == plan.spec(0, CLASSES, {}, Path("/elsewhere"), ImageOptions()).digest()
    assert spec.digest() != plan.spec(1, CLASSES, {}, Path("/o"), ImageOptions()).digest()
    assert spec.digest() != plan.spec(0, CLASSES, {}, Path("/o"), ImageOptions(jpeg_quality=80)).digest()


def test_more_shards_than_images_is_an_error() -> None:
    with pytest.raises(UserError, match="fewer than its 1024 shards"):
        plan_split("validation", split_images(per_class=1), 1024)
