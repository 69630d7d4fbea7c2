"""Find the images of one split on disk: a `<wnid>/` class tree or a flat ILSVRC validation folder."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .labels import ClassTable

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".jpe", ".png"})
FLAT_VALIDATION_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")


@dataclass(frozen=True)
class SplitImages:
    """Every image of one split: names relative to `root` and class indices, in a stable order.

    `root` is a directory, or an uncompressed archive when `members` gives each image's
    (offset, length) in it. Names are `<wnid>/<file>` (or the flat validation file name) either
    way, so the shard plan is the same for a folder and for the tar it came from.
    """

    root: Path
    names: list[str]
    classes: np.ndarray  # int32 index into ClassTable.wnids, parallel to `names`
    members: np.ndarray | None = None  # int64 (N, 2): offset and length of each image in `root`

    def __len__(self) -> int:
        return len(self.names)

    def classes_present(self, num_classes: int) -> int:
        """How many of the labels file's classes have at least one image."""
        return int((np.bincount(self.classes, minlength=num_classes) > 0).sum())


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _image_files(directory: Path) -> tuple[list[str], list[str]]:
    """Sorted image file names and other (ignored) file names in one directory."""
    images, others = [], []
    with os.scandir(directory) as entries:
        for entry in entries:
            if _is_hidden(entry.name) or not entry.is_file():
                continue
            is_image = os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
            (images if is_image else others).append(entry.name)
    return sorted(images), sorted(others)


def _warn_ignored(directory: Path, others: list[str]) -> None:
    if others:
        log.warning("%s: ignored %d file(s) without an image extension, e.g. %s", directory, len(others), others[0])


def scan_class_tree(root: Path, classes: ClassTable, subdirs: list[str]) -> SplitImages:
    index = classes.index_of()
    names: list[str] = []
    labels: list[int] = []
    for wnid in subdirs:
        if wnid not in index:
            raise UserError(
                f"{root / wnid}: folder name is not a synset of the labels file; "
                "remove the folder or pass a --labels_file that lists it"
            )
        images, others = _image_files(root / wnid)
        _warn_ignored(root / wnid, others)
        if not images:
            raise UserError(f"{root / wnid}: class folder has no images; remove it or add its images")
        names.extend(f"{wnid}/{name}" for name in images)
        labels.extend([index[wnid]] * len(images))
    return SplitImages(root, names, np.asarray(labels, dtype=np.int32))


def scan_flat_validation(root: Path, classes: ClassTable, images: list[str], validation_wnids: list[str],
                         members: np.ndarray | None = None) -> SplitImages:
    """Label flat ILSVRC validation files (in folder `root`, or archive `root` at `members`) by number."""
    index = classes.index_of()
    labels: list[int] = []
    for name in images:
        where = f"{root}[{name}]" if members is not None else root / name
        match = FLAT_VALIDATION_NAME.fullmatch(name)
        if not match:
            raise UserError(
                f"{where}: cannot tell the class of a file outside a class folder "
                "(flat validation files are named ILSVRC2012_val_NNNNNNNN.JPEG)"
            )
        number = int(match.group(1))
        if not 1 <= number <= len(validation_wnids):
            raise UserError(f"{where}: the validation label file has no line {number}; pass the right --validation_labels_file")
        wnid = validation_wnids[number - 1]
        if wnid not in index:
            raise UserError(f"{where}: its validation label {wnid} is not a synset of the labels file")
        labels.append(index[wnid])
    return SplitImages(root, images, np.asarray(labels, dtype=np.int32), members)


def scan_split(split: str, root: Path, classes: ClassTable, validation_wnids: list[str] | None) -> SplitImages:
    """Find one split's images; class folders if there are any, else the flat ILSVRC validation layout."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise UserError(f"{root}: {split} directory not found; pass the folder that holds the <wnid>/ class folders")
    with os.scandir(root) as entries:
        subdirs = sorted(e.name for e in entries if e.is_dir() and not _is_hidden(e.name))
    flat_images, others = _image_files(root)
    _warn_ignored(root, others)
    if subdirs and flat_images:
        raise UserError(f"{root}: holds both class folders and loose images ({flat_images[0]}); keep one layout")
    if subdirs:
        found = scan_class_tree(root, classes, subdirs)
    elif flat_images and validation_wnids is not None:
        found = scan_flat_validation(root, classes, flat_images, validation_wnids)
    elif flat_images:
        raise UserError(f"{root}: loose images but no class folders; put them in <wnid>/ folders")
    else:
        found = SplitImages(root, [], np.zeros(0, dtype=np.int32))
    if not len(found):
        raise UserError(f"{root}: the {split} split has no images; check the path")
    return found
