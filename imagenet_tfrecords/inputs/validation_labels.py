"""Validation labels from several sources (devkit, Kaggle CSV, the validation label file): merged, and
checked against each other and against the class folders the images lie in.

A flat validation folder of ILSVRC names is labelled by each file's number; any other flat folder by
a `file,class` CSV (`--validation_labels_file`), the common format of custom sets.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError, printable
from .ilsvrc_names import FLAT_VALIDATION_NAME
from .labels import read_text
from .split_images import SplitImages, is_image_name

log = logging.getLogger(__name__)

# A first CSV row whose file column is one of these is a header, as is one that names no image
# file while the rows after it do.
HEADER_WORDS = frozenset({"file", "filename", "file_name", "image", "image_id", "image_name", "img", "id", "name",
                          "path", "filepath", "file_path"})


@dataclass(frozen=True)
class LabelSource:
    """One source of validation labels: item i is the wnid of ILSVRC2012_val_{i+1:08d}.JPEG ('' if unknown)."""

    name: str  # how a message names it: a path
    wnids: list[str]


def merged_labels(sources: list[LabelSource]) -> list[str]:
    """Each image's label from the first source that has one."""
    length = max((len(s.wnids) for s in sources), default=0)
    return [next((s.wnids[i] for s in sources if i < len(s.wnids) and s.wnids[i]), "") for i in range(length)]


def check_agreement(sources: list[LabelSource], images: SplitImages) -> None:
    """Every source that labels a validation image of `images` gives it the same wnid, and so does its class
    folder when it lies in one (`<wnid>/ILSVRC2012_val_NNNNNNNN.JPEG`, as download_imagenet.py writes it)."""
    if not sources:
        return
    for name in images.names:
        folder, _, file = name.rpartition("/")
        match = FLAT_VALIDATION_NAME.fullmatch(file)
        if not match:
            continue
        i = int(match.group(1)) - 1
        labelled = [(s.name, s.wnids[i]) for s in sources if i < len(s.wnids) and s.wnids[i]]
        for source, wnid in labelled[1:]:
            if wnid != labelled[0][1]:
                raise UserError(f"{images.where(name)}: {labelled[0][0]} says {labelled[0][1]} but {source} says {wnid}; "
                                "the validation labels disagree, pass the matching devkit or --validation_labels_file")
        if folder and labelled and labelled[0][1] != folder:
            raise UserError(f"{images.where(name)}: lies in class folder {folder} but {labelled[0][0]} says "
                            f"{labelled[0][1]}; move it to the {labelled[0][1]} folder, or pass the "
                            "--validation_labels_file (or --devkit) that matches the folders")


@dataclass(frozen=True)
class FlatLabels:
    """How each file of a flat validation folder gets its class: by the number in its ILSVRC name
    (`by_number[i]` is the class of ILSVRC2012_val_{i+1:08d}.JPEG, '' if unknown), or by its file name
    (`by_name`, from a `file,class` CSV; a name without its extension matches too)."""

    by_number: Sequence[str] = ()
    by_name: Mapping[str, str] | None = None
    source: str = "the validation label file"  # how messages name it

    def class_of(self, name: str) -> str | None:
        """The class `by_name` gives a file (by its name, else by its name without the extension)."""
        assert self.by_name is not None
        return self.by_name.get(name) or self.by_name.get(os.path.splitext(name)[0])


def is_labels_csv(path: Path) -> bool:
    """Whether a validation labels file is a `file,class` CSV (a list of classes has no commas)."""
    return any("," in line for line in read_text(path, "validation labels file").splitlines())


def _is_header(file: str, rest: list[tuple[int, str, str]]) -> bool:
    return file.lower() in HEADER_WORDS or (not is_image_name(file) and any(is_image_name(f) for _, f, _ in rest[:1000]))


def read_labels_csv(path: Path) -> dict[str, str]:
    """`file,class` lines (a header line optional) -> class by file name; one line naming what is wrong."""
    rows = []
    text = read_text(path, "validation labels file").removeprefix("\ufeff")  # the byte-order mark Excel writes
    for number, row in enumerate(csv.reader(text.splitlines()), 1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if len(cells) != 2 or not all(cells):
            raise UserError(f"{printable(path)}:{number}: expected 'file,class', got {','.join(row)!r}")
        rows.append((number, cells[0], cells[1]))
    if rows and _is_header(rows[0][1], rows[1:]):
        rows = rows[1:]
    if not rows:
        raise UserError(f"{printable(path)}: no 'file,class' lines; it needs one line per validation image")
    labels: dict[str, str] = {}
    for number, file, label in rows:
        name = file.rsplit("/", 1)[-1]  # a flat folder: the file's name, wherever the CSV says it lay
        if labels.setdefault(name, label) != label:
            raise UserError(f"{printable(path)}:{number}: {name} is labelled {labels[name]} on an earlier line and "
                            f"{label} here; keep one line per file")
    return labels


def classes_by_name(root: Path | str, images: list[str], labels: FlatLabels, where_of: Callable[[str], str]) -> list[str]:
    """Each flat file's class from the CSV; a file it lacks is one line, lines naming no file a warning."""
    by_name = labels.by_name or {}
    found, missing, used = [], [], set()
    for name in images:
        key = name if name in by_name else os.path.splitext(name)[0]
        if key in by_name:
            used.add(key)
        else:
            missing.append(name)
        found.append(by_name.get(key, ""))
    if missing:
        raise UserError(f"{where_of(missing[0])}: has no line in {labels.source} ({len(missing)} of the "
                        f"{len(images)} files have none); add a '{printable(missing[0])},<class>' line for each")
    unused = sorted(by_name.keys() - used)
    if unused:
        log.warning("%s: %d line(s) name no file of %s, e.g. %s", labels.source, len(unused), printable(root),
                    printable(unused[0]))
    return found


def check_csv_agreement(labels: FlatLabels, images: SplitImages) -> None:
    """Validation in class folders with a `file,class` CSV too: each file the CSV names lies in its class."""
    if labels.by_name is None:
        return
    for name in images.names:
        folder, _, file = name.rpartition("/")
        label = labels.class_of(file) if folder else None
        if label is not None and label != folder:
            raise UserError(f"{images.where(name)}: lies in class folder {folder} but {labels.source} says {label}; "
                            "move it, or fix its line")
