"""The build's classes in label order: from the labels file, or, without one, ImageNet's 1000 or the
dataset's own class folder names.

Own data needs no ImageNet metadata: with no `--labels_file` and class folders that are not ImageNet
wnids (`cats/`, `dogs/`), the classes are the folder names, sorted, and each class's text is its name.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Protocol

from ..errors import UserError, printable
from ..storage.urls import filesystem, is_url, store_errors
from .labels import DEFAULT_LABELS_FILE, ClassTable, default_texts, load_texts, load_wnids
from .validation_labels import is_labels_csv, read_labels_csv

log = logging.getLogger(__name__)

WNID = re.compile(r"n\d{8}")  # an ImageNet (WordNet) synset id


class ClassSources(Protocol):
    """What decides the classes, as a build's flags give it (a BuildConfig)."""

    labels_file: Path | None  # None: not given
    metadata_file: Path | None
    validation_labels_file: Path | None
    train_dir: Path | str | None
    validation_dir: Path | str | None
    train_tar: Path | None
    validation_tar: Path | None
    kaggle_root: Path | None


def _subfolders(root: Path | str) -> list[str]:
    """The class folder names directly under a split's folder (local or in a bucket); none if it is not one."""
    if is_url(root):
        fs, path = filesystem(str(root))
        with store_errors(str(root), "list the class folders"):
            entries = fs.ls(path, detail=True) if fs.isdir(path) else []
        names = [entry["name"].rstrip("/").rsplit("/", 1)[-1] for entry in entries if entry["type"] == "directory"]
    else:
        try:
            with os.scandir(root) as found:
                names = [entry.name for entry in found if entry.is_dir()]
        except OSError:  # not a folder, or unreadable: the split's scan says so in its own words
            return []
    return [name for name in names if not name.startswith(".")]


def _own_class_names(where: ClassSources) -> list[str] | None:
    """The sorted class folder names (or, with no class folders, the classes of the validation CSV) when
    they are not ImageNet wnids; None when they are (or the inputs are the ILSVRC tars or Kaggle layout)."""
    if where.train_tar is not None or where.validation_tar is not None or where.kaggle_root is not None:
        return None
    folders = {name: root for root in (where.train_dir, where.validation_dir) if root is not None
               for name in _subfolders(root)}
    names = set(folders)
    csv_file = where.validation_labels_file
    if not names and csv_file is not None and is_labels_csv(csv_file):
        names = set(read_labels_csv(csv_file).values())
    wnids = sorted(name for name in names if WNID.fullmatch(name))
    if not names or len(wnids) == len(names):
        return None
    if wnids:
        other = min(names - set(wnids))
        place = os.path.join(str(folders[other]), other) if other in folders else f"{csv_file} (class {other})"
        raise UserError(f"{printable(place)}: not an ImageNet wnid, while other classes are ({wnids[0]}); "
                        "pass a --labels_file that lists every class, or remove it")
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"{printable(folders[name])}/{printable(name)}: a class folder whose name is not UTF-8; "
                            "rename it (the name is stored as the class's text)") from None
    return sorted(names)


def _describe(names: list[str]) -> str:
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


def resolve_classes(where: ClassSources, label_offset: int) -> ClassTable:
    """The classes in label order with their text: the labels file's; without one, the sorted folder
    names when they are not ImageNet wnids, else the 1000 ILSVRC-2012 classes."""
    if where.labels_file is not None:
        names = load_wnids(where.labels_file)
    else:
        own = _own_class_names(where)
        if own is not None:
            log.info("no --labels_file: the classes are the %d class folder names, sorted (%s), labels %d..%d; "
                     "pass --labels_file to choose the order", len(own), _describe(own), label_offset,
                     len(own) - 1 + label_offset)
        names = own if own is not None else load_wnids(DEFAULT_LABELS_FILE)
    texts = load_texts(where.metadata_file, names) if where.metadata_file is not None else default_texts(names)
    return ClassTable(tuple(names), tuple(texts), label_offset)
