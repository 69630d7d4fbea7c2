"""Resize modes through the real CLI: sizes, aspect, and bounding boxes after a crop."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from conftest import run_build_cli, sample_args
from imagenet_tfrecords.inputs.labels import load_bounding_boxes
from tfread import decode, read_split


def original_sizes(sample) -> dict[str, tuple[int, int]]:
    sizes = {}
    for path in sample.train_dir.glob("*/*.JPEG"):
        with Image.open(path) as image:
            sizes[path.name] = image.size
    return sizes


@pytest.fixture(scope="module")
def originals(sample) -> dict[str, tuple[int, int]]:
    return original_sizes(sample)


def test_shorter_side_keeps_aspect(sample, originals, tmp_path: Path) -> None:
    run_build_cli(*sample_args(sample, tmp_path, "--resize_images", "--resize_mode", "shorter_side",
                               "--new_height", "128", "--new_width", "128"))
    for record in read_split(tmp_path, "train"):
        width, height = originals[record["image/filename"]]
        stored = (record["image/width"], record["image/height"])
        assert min(stored) == 128
        assert stored[0] / stored[1] == pytest.approx(width / height, abs=0.01)
        assert decode(record["image/encoded"]).shape == (stored[1], stored[0], 3)


def test_stretch_gives_the_asked_size(sample, tmp_path: Path) -> None:
    run_build_cli(*sample_args(sample, tmp_path, "--resize_images", "--new_height", "96", "--new_width", "160"))
    for record in read_split(tmp_path, "train") + read_split(tmp_path, "validation"):
        assert decode(record["image/encoded"]).shape == (96, 160, 3)
        assert (record["image/height"], record["image/width"]) == (96, 160)


def test_center_crop_size_and_boxes(sample, originals, tmp_path: Path) -> None:
    run_build_cli(*sample_args(sample, tmp_path, "--resize_images", "--resize_mode", "center_crop",
                               "--new_height", "112", "--new_width", "112"))
    boxes = load_bounding_boxes(sample.bounding_box_file)
    checked = 0
    for record in read_split(tmp_path, "train"):
        assert decode(record["image/encoded"]).shape == (112, 112, 3)
        name = record["image/filename"]
        width, height = originals[name]
        side = min(width, height)
        left, top = (width - side) / 2 / width, (height - side) / 2 / height
        expected = []
        for xmin, ymin, xmax, ymax in boxes.get(name, []):
            box = [min(max(v, 0.0), 1.0) for v in (
                (xmin - left) / (1 - 2 * left), (ymin - top) / (1 - 2 * top),
                (xmax - left) / (1 - 2 * left), (ymax - top) / (1 - 2 * top))]
            if box[0] < box[2] and box[1] < box[3]:
                expected.append(box)
        got = list(zip(record["image/object/bbox/xmin"], record["image/object/bbox/ymin"],
                       record["image/object/bbox/xmax"], record["image/object/bbox/ymax"]))
        assert len(got) == len(expected), name
        for got_box, expected_box in zip(got, expected):
            # the crop snaps to whole pixels of the (possibly DCT-reduced) decode: within ~1 output pixel
            assert got_box == pytest.approx(expected_box, abs=1 / 112)
            assert all(0.0 <= v <= 1.0 for v in got_box)
        checked += bool(expected)
    assert checked >= 5
