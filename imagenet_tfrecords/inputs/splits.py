"""What a build reads: each requested split's images, from the adapter of its layout, and the boxes.

A split comes from a class tree or flat validation folder on disk (`folders`) or in a bucket
(`buckets`), from an ILSVRC tar read in place (`tars`), or from the Kaggle layout (`kaggle`:
folders of its own, found from its root). Validation images are labelled by every source of
labels at hand, which must agree (`validation_labels`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from ..errors import UserError
from ..storage.urls import is_url
from . import kaggle
from .buckets import scan_bucket_split
from .devkit import load_devkit_labels
from .folders import scan_split
from .labels import DEFAULT_VALIDATION_LABELS_FILE, Box, ClassTable, load_bounding_boxes, load_validation_labels
from .split_images import SplitImages, warn_ignored
from .tars import index_cache, load_bounding_box_tar, scan_train_tar, scan_validation_tar
from .validation_labels import (FlatLabels, LabelSource, check_agreement, check_csv_agreement, is_labels_csv,
                                merged_labels, read_labels_csv)

log = logging.getLogger(__name__)


class InputLocations(Protocol):
    """Where a build's inputs are, as its flags give them (a BuildConfig)."""

    output_dir: Path | str  # the tars' indexes are kept in it
    train_dir: Path | str | None  # a folder, or a bucket URL
    validation_dir: Path | str | None
    train_tar: Path | None
    validation_tar: Path | None
    kaggle_root: Path | None
    devkit: Path | None
    validation_labels_file: Path | None  # None: the shipped ILSVRC-2012 list
    bounding_box_file: Path | None
    bbox_tar: Path | None


def load_boxes(where: InputLocations, classes: ClassTable) -> dict[str, list[Box]]:
    """The bounding boxes by image file name: from the bbox tar, the box CSV, or none."""
    if where.bbox_tar is not None:
        return load_bounding_box_tar(where.bbox_tar, index_cache(where.output_dir), frozenset(classes.wnids))
    return load_bounding_boxes(where.bounding_box_file) if where.bounding_box_file else {}


def _validation_sources(where: InputLocations, kaggle_root: Path | None) -> list[LabelSource]:
    """Every source of validation labels by ILSVRC number at hand, most authoritative first; they must agree."""
    sources = [load_devkit_labels(where.devkit)] if where.devkit is not None else []
    solution = kaggle.load_validation_solution(kaggle_root) if kaggle_root is not None else None
    sources += [solution] if solution is not None else []
    path = where.validation_labels_file or DEFAULT_VALIDATION_LABELS_FILE
    return sources + [LabelSource(str(path), load_validation_labels(path))]


def _labels_csv(where: InputLocations) -> FlatLabels | None:
    """`--validation_labels_file` as a `file,class` CSV, when it is one."""
    path = where.validation_labels_file
    if path is None or not is_labels_csv(path):
        return None
    return FlatLabels(by_name=read_labels_csv(path), source=str(path))


def _scan(split: str, root: Path | str | None, tar: Path | None, where: InputLocations, classes: ClassTable,
          validation_labels: FlatLabels | None) -> SplitImages:
    """One split's images, by the adapter of its layout."""
    if tar is None and is_url(root):
        return scan_bucket_split(split, str(root), classes, validation_labels)
    if tar is None:
        return scan_split(split, Path(root), classes, validation_labels)
    if split == "train":
        return scan_train_tar(tar, index_cache(where.output_dir), classes)
    assert validation_labels is not None
    return scan_validation_tar(tar, index_cache(where.output_dir), classes, validation_labels)


def split_images(where: InputLocations, classes: ClassTable) -> Iterator[tuple[str, SplitImages]]:
    """Each requested split and its images, validation first (as the original scripts); a split is
    scanned when the caller asks for it."""
    train_dir, validation_dir = where.train_dir, where.validation_dir
    if where.kaggle_root is not None:
        kaggle_train, kaggle_validation = kaggle.split_dirs(where.kaggle_root)
        train_dir = train_dir or (kaggle_train if where.train_tar is None else None)
        validation_dir = validation_dir or (kaggle_validation if where.validation_tar is None else None)
    kaggle_root = where.kaggle_root or kaggle.find_root(validation_dir) or kaggle.find_root(train_dir)
    if kaggle_root is not None:
        kaggle.check_synset_mapping(kaggle_root, classes.wnids)
    requested = [("validation", validation_dir, where.validation_tar), ("train", train_dir, where.train_tar)]
    requested = [entry for entry in requested if entry[1] is not None or entry[2] is not None]
    if not requested:
        raise UserError("nothing to build: pass --train_directory and/or --validation_directory, the tars "
                        "(--train_tar, --validation_tar), --kaggle_root DIR or --sample DIR")
    for split, root, tar in requested:
        csv_labels = _labels_csv(where) if split == "validation" else None
        sources = _validation_sources(where, kaggle_root) if split == "validation" and csv_labels is None else []
        labels = csv_labels or (FlatLabels(merged_labels(sources), source=sources[-1].name)
                                if split == "validation" else None)
        images = _scan(split, root, tar, where, classes, labels)
        warn_ignored(split, images)
        check_agreement(sources, images)
        if csv_labels is not None:
            check_csv_agreement(csv_labels, images)
        present = images.classes_present(len(classes.wnids))
        if present < len(classes.wnids):
            log.warning("%s: %d of the %d classes of the labels file have images", split, present, len(classes.wnids))
        yield split, images
