"""Flat validation files are labelled by number; problems name the file, or the archive member."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagenet_tfrecords.errors import UserError
from imagenet_tfrecords.inputs.labels import ClassTable
from imagenet_tfrecords.inputs.folders import scan_flat_validation, scan_split
from imagenet_tfrecords.inputs.validation_labels import FlatLabels

CLASSES = ClassTable(("n01440764", "n02119789"), ("tench", "kit fox"))
LABELS = FlatLabels(["n02119789", "n01440764", "n09999999"])


def test_flat_validation_is_labelled_by_file_number() -> None:
    names = ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"]
    found = scan_flat_validation(Path("/val"), CLASSES, names, LABELS)
    assert found.classes.tolist() == [1, 0] and found.members is None


@pytest.mark.parametrize("members,where", [(None, "/val/ILSVRC2012_val_00000003.JPEG"),
                                          (np.zeros((1, 2), np.int64), "/val.tar[ILSVRC2012_val_00000003.JPEG]")])
def test_an_unknown_label_names_the_file_or_member(members, where: str) -> None:
    root = Path("/val.tar") if members is not None else Path("/val")
    with pytest.raises(UserError, match="n09999999 is not a class of the labels file") as caught:
        scan_flat_validation(root, CLASSES, ["ILSVRC2012_val_00000003.JPEG"], LABELS, members)
    assert str(caught.value).startswith(where + ":")


def test_a_split_folder_that_is_a_link_loop_is_named(tmp_path: Path) -> None:
    (tmp_path / "train").symlink_to("train")
    with pytest.raises(UserError, match="a symbolic link loop") as caught:
        scan_split("train", tmp_path / "train", CLASSES, None)
    assert str(caught.value).startswith(f"{tmp_path / 'train'}:")
