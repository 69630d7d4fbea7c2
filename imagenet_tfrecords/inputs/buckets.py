"""Find the images of one split in a bucket: the same `<wnid>/` class tree or flat ILSVRC validation
layout as `folders` reads on disk, from one recursive listing (no request per image).

The listing gives each object's size and change marker, kept as the images' stamps, so that
planning a split of 1.28 M objects costs a listing, not 1.28 M requests.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..storage.urls import filesystem, object_stamp, store_errors
from .folders import scan_flat_validation
from .labels import ClassTable
from .split_images import Ignored, SplitImages, is_image_name
from .validation_labels import FlatLabels


def _listing(url: str) -> dict[str, dict]:
    """Every object under `url`, by its name relative to it."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    with store_errors(url, "list the images"):
        found = fs.find(root, detail=True)
    return {path[len(root) + 1:]: info for path, info in found.items()
            if path.startswith(root + "/") and not path.endswith("/")}  # a folder marker object is no file


def _stamps(infos: list[dict]) -> np.ndarray:
    return np.asarray([object_stamp(info) for info in infos], dtype=np.int64).reshape(-1, 2)


def scan_bucket_split(split: str, url: str, classes: ClassTable, validation_labels: FlatLabels | None) -> SplitImages:
    """A split's images under `url`; entries not taken counted as on disk (a folder inside a class as
    `wnid/folder/`, once)."""
    url = url.rstrip("/")
    objects = _listing(url)
    index = classes.index_of()
    loose, images, ignored = [], [], set()
    for name in sorted(objects):
        parts = name.split("/")
        if len(parts) == 1:
            if is_image_name(name):
                loose.append(name)
            else:
                ignored.add(name)
        elif parts[0].startswith("."):
            ignored.add(f"{parts[0]}/")
        elif len(parts) > 2:
            ignored.add(f"{parts[0]}/{parts[1]}/")
        elif is_image_name(parts[1]):
            images.append(name)
        else:
            ignored.add(name)
    if loose and images:
        raise UserError(f"{url}: holds both class folders and loose images ({loose[0]}); keep one layout")
    if loose and validation_labels is None:
        raise UserError(f"{url}: loose images but no class folders; put them in one folder per class")
    if not loose and not images:
        raise UserError(f"{url}: the {split} split has no images; check the URL")
    taken = loose or images
    if loose and validation_labels is not None:
        found = scan_flat_validation(url, classes, loose, validation_labels, ignored=Ignored.of(sorted(ignored), url, False))
    else:
        for wnid in sorted({name.split("/", 1)[0] for name in images}):
            if wnid not in index:
                raise UserError(f"{url}/{wnid}: folder name is not a class of the labels file; "
                                "remove the folder or pass a --labels_file that lists it")
        labels = np.asarray([index[name.split("/", 1)[0]] for name in images], dtype=np.int32)
        found = SplitImages(url, images, labels, ignored=Ignored.of(sorted(ignored), url, False))
    return SplitImages(found.root, found.names, found.classes, found.members, found.ignored,
                       stamps=_stamps([objects[name] for name in taken]))
