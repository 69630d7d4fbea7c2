"""Find the images of one split on disk: a `<wnid>/` class tree or a flat ILSVRC validation folder.

Names are kept as Python gives them: a file name that is not UTF-8 is a str with surrogate
escapes (os.fsencode gives its bytes back). Messages name paths through `printable`.
"""

from __future__ import annotations

import errno
import os
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np

from ..errors import UserError, printable
from .ilsvrc_names import FLAT_VALIDATION_NAME
from .labels import ClassTable
from .split_images import Ignored, SplitImages, is_image_name, where
from .validation_labels import FlatLabels, classes_by_name


@dataclass
class _Listing:
    """One folder's entries: image files (with a file identity each), sub-folders, and the rest."""

    images: list[str] = field(default_factory=list)
    devices: list[int] = field(default_factory=list)  # st_dev and st_ino of each image (its identity)
    inodes: list[int] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)  # `name`, or `name/` for a folder


def cannot_read(path: str | os.PathLike, exc: OSError) -> UserError:
    """The one line for a file or folder that cannot be read: a link loop, permissions, an I/O error."""
    if exc.errno == errno.ELOOP:
        return UserError(f"{printable(path)}: a symbolic link loop; remove the link or point it at a real file "
                         "or folder")
    return UserError(f"{printable(path)}: cannot read it ({exc.strerror}); fix its permissions or remove it")


def _list_folder(directory: Path) -> _Listing:
    """One scandir pass: no stat per file, except for symbolic links (which need one to be followed)."""
    listing = _Listing()
    try:
        device = os.stat(directory).st_dev
        with os.scandir(directory) as entries:
            found = list(entries)
    except OSError as exc:
        raise cannot_read(directory, exc) from None
    for entry in found:
        try:
            is_file = entry.is_file()
            is_folder = not is_file and entry.is_dir()
            target = entry.stat() if is_file and entry.is_symlink() else None  # cached by is_file()
        except OSError as exc:
            raise cannot_read(entry.path, exc) from None
        if is_file and is_image_name(entry.name):
            listing.images.append(entry.name)
            listing.devices.append(target.st_dev if target else device)
            listing.inodes.append(target.st_ino if target else entry.inode())
        elif is_folder and not entry.name.startswith("."):
            listing.folders.append(entry.name)
        else:  # a hidden folder, a file that is not an image, a link to nothing, a device or FIFO
            listing.others.append(entry.name + "/" if is_folder else entry.name)
    order = sorted(range(len(listing.images)), key=listing.images.__getitem__)
    listing.images = [listing.images[i] for i in order]
    listing.devices = [listing.devices[i] for i in order]
    listing.inodes = [listing.inodes[i] for i in order]
    return listing


def _refuse_duplicates(root: Path, names: list[str], classes: np.ndarray, devices: list[int] | np.ndarray,
                       inodes: list[int] | np.ndarray) -> None:
    """The same file (through a link) under two classes would be stored with two labels."""
    device, inode = np.asarray(devices, dtype=np.uint64), np.asarray(inodes, dtype=np.uint64)
    order = np.lexsort((inode, device))
    device, inode, labels = device[order], inode[order], classes[order]
    clash = np.flatnonzero((device[1:] == device[:-1]) & (inode[1:] == inode[:-1]) & (labels[1:] != labels[:-1]))
    if clash.size:
        first, second = sorted((names[order[clash[0]]], names[order[clash[0] + 1]]))
        raise UserError(f"{printable(root / first)} and {printable(root / second)} are the same file (a link), "
                        "so it would be stored under two labels; remove the link")


def scan_class_tree(root: Path, classes: ClassTable, subdirs: list[str], root_ignored: list[str]) -> SplitImages:
    """Label each image by its `<wnid>/` folder; entries not taken are counted with the root's (`root_ignored`)."""
    index = classes.index_of()
    ignored = list(root_ignored)
    names: list[str] = []
    # Machine integers, not a Python int per image: ~40 bytes an image less at the peak (14 M for ImageNet-21k).
    labels, devices, inodes = array("i"), array("Q"), array("Q")
    for wnid in subdirs:
        if wnid not in index:
            raise UserError(
                f"{printable(root / wnid)}: folder name is not a class of the labels file; "
                "remove the folder or pass a --labels_file that lists it"
            )
        listing = _list_folder(root / wnid)
        ignored.extend(f"{wnid}/{name}" for name in listing.others + [f"{f}/" for f in listing.folders])
        if not listing.images:
            raise UserError(f"{printable(root / wnid)}: class folder has no images; remove it or add its images")
        names.extend(f"{wnid}/{name}" for name in listing.images)
        labels.extend(repeat(index[wnid], len(listing.images)))
        devices.extend(listing.devices)
        inodes.extend(listing.inodes)
    found = np.frombuffer(labels, dtype=np.int32)
    _refuse_duplicates(root, names, found, np.frombuffer(devices, dtype=np.uint64),
                       np.frombuffer(inodes, dtype=np.uint64))
    return SplitImages(root, names, found, ignored=Ignored.of(ignored, root, False))


def _class_by_number(name: str, labels: FlatLabels, where_of: Callable[[str], str]) -> str:
    """The class of an ILSVRC-named validation file, by its number."""
    match = FLAT_VALIDATION_NAME.fullmatch(name)
    if not match:
        raise UserError(
            f"{where_of(name)}: cannot tell the class of a file outside a class folder; put the files in class "
            "folders, or pass --validation_labels_file with a 'file,class' line per file (without one, "
            f"{labels.source} labels only ILSVRC names, ILSVRC2012_val_NNNNNNNN.JPEG, by their number)"
        )
    number = int(match.group(1))
    if not 1 <= number <= len(labels.by_number):
        raise UserError(f"{where_of(name)}: the validation label file has no line {number}; "
                        "pass the right --validation_labels_file")
    return labels.by_number[number - 1]


def scan_flat_validation(root: Path | str, classes: ClassTable, images: list[str], labels: FlatLabels,
                         members: np.ndarray | None = None, ignored: Ignored = Ignored()) -> SplitImages:
    """Label flat validation files (in folder `root`, or archive `root` at `members`): by the `file,class`
    CSV, or by the number in their ILSVRC names."""
    index = classes.index_of()
    in_archive = members is not None

    def where_of(name: str) -> str:
        return where(root, name, in_archive)

    if labels.by_name is not None:
        found = classes_by_name(root, images, labels, where_of)
    else:
        found = [_class_by_number(name, labels, where_of) for name in images]
    for name, wnid in zip(images, found):
        if wnid not in index:
            raise UserError(f"{where_of(name)}: its validation label {wnid} is not a class of the labels file "
                            "(or of the class folders)")
    return SplitImages(root, images, np.asarray([index[w] for w in found], dtype=np.int32), members, ignored)


def resolve(path: Path) -> Path:
    """The absolute path; a symbolic link loop on the way is a UserError naming it."""
    try:
        return Path(path).resolve()
    except RuntimeError:  # pathlib's way of saying ELOOP
        raise UserError(f"{printable(path)}: a symbolic link loop; pass the real file or folder") from None


def scan_split(split: str, root: Path, classes: ClassTable, validation_labels: FlatLabels | None) -> SplitImages:
    """Find one split's images; class folders if there are any, else the flat ILSVRC validation layout."""
    root = resolve(root)
    if not root.is_dir():
        what = "is a file, not a directory" if root.exists() else "directory not found"
        raise UserError(f"{printable(root)}: {split} {what}; pass the folder that holds one folder per class")
    listing = _list_folder(root)
    subdirs = sorted(listing.folders)
    if subdirs and listing.images:
        raise UserError(f"{printable(root)}: holds both class folders and loose images ({printable(listing.images[0])}); "
                        "keep one layout")
    if subdirs:
        found = scan_class_tree(root, classes, subdirs, listing.others)
    elif listing.images and validation_labels is not None:
        found = scan_flat_validation(root, classes, listing.images, validation_labels,
                                     ignored=Ignored.of(listing.others, root, False))
        _refuse_duplicates(root, found.names, found.classes, listing.devices, listing.inodes)
    elif listing.images:
        raise UserError(f"{printable(root)}: loose images but no class folders; put them in one folder per class")
    else:
        found = SplitImages(root, [], np.zeros(0, dtype=np.int32))
    if not len(found):
        raise UserError(f"{printable(root)}: the {split} split has no images; check the path")
    return found
