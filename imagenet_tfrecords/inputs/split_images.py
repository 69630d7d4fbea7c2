"""What every input layout gives for one split: its images' names, classes and where they are (`SplitImages`),
and what its scan found beside them and did not take (`Ignored`)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import printable

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".jpe", ".png"})


def where(root: Path | str, name: str, in_archive: bool) -> str:
    """How a message names one entry of a split: its path (or URL), or `archive[member]`."""
    return printable(f"{root}[{name}]" if in_archive else os.path.join(root, name))


def is_image_name(name: str) -> bool:
    """Whether a scan takes a file of this name: not hidden, with an image extension."""
    _, dot, extension = name.rpartition(".")  # os.path.splitext, without its cost on 1.28 M names
    return bool(dot) and not name.startswith(".") and "." + extension.lower() in IMAGE_EXTENSIONS


@dataclass(frozen=True)
class Ignored:
    """What a scan found beside the images and did not take: how many entries, and the first by name.

    A folder where images are looked for (a sub-folder of a class, a folder member of a class
    tar) is one entry, `name/`; its contents are not searched.
    """

    count: int = 0
    example: str = ""  # as a message names it (see `where`)

    @classmethod
    def of(cls, names: list[str], root: Path, in_archive: bool) -> Ignored:
        return cls(len(names), where(root, min(names), in_archive)) if names else cls()

    def describe(self) -> str:
        return (f"ignored {self.count} {'entry' if self.count == 1 else 'entries'} that are not image files "
                f"(other files, hidden files, folders inside a class, links to nothing), e.g. {self.example}")


@dataclass(frozen=True)
class SplitImages:
    """Every image of one split: names relative to `root` and class indices, in a stable order.

    `root` is a directory, or an uncompressed archive when `members` gives each image's
    (offset, length) in it. Names are `<wnid>/<file>` (or the flat validation file name) either
    way, so the shard plan is the same for a folder and for the tar it came from.
    """

    root: Path | str  # a local path, or a URL
    names: list[str]
    classes: np.ndarray  # int32 index into ClassTable.wnids, parallel to `names`
    members: np.ndarray | None = None  # int64 (N, 2): offset and length of each image in `root`
    ignored: Ignored = Ignored()
    stamps: np.ndarray | None = None  # int64 (N, 2): each image's stamp, when the listing gave it (a bucket's)

    def __len__(self) -> int:
        return len(self.names)

    def where(self, name: str) -> str:
        return where(self.root, name, self.members is not None)

    def subset(self, keep: np.ndarray) -> SplitImages:
        """The images at the sorted positions `keep`, in their order here."""
        pick = None if self.members is None else self.members[keep]
        stamps = None if self.stamps is None else self.stamps[keep]
        return SplitImages(self.root, [self.names[i] for i in keep], self.classes[keep], pick, self.ignored, stamps)

    def classes_present(self, num_classes: int) -> int:
        """How many of the labels file's classes have at least one image."""
        return int((np.bincount(self.classes, minlength=num_classes) > 0).sum())


def warn_ignored(split: str, images: SplitImages) -> None:
    if images.ignored.count:
        log.warning("%s: %s", split, images.ignored.describe())
