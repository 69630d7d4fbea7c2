"""The shard plan: which image goes into which shard. Pure data, independent of the worker count.

A shard's spec also carries each file's stamp (size and mtime, from stat alone), so that its
digest changes when an input file does and a resumed build writes that shard again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..images.prepare import ImageOptions
from ..inputs.labels import Box, ClassTable
from ..inputs.split_images import SplitImages
from ..storage.urls import stamp_of

SHUFFLE_SEED = 12345  # the Inception build script's shuffle seed, kept for familiarity

# The record file formats of `--output_format`, each with its shard names' suffix: TFRecord shards keep the
# Inception script's bare `train-00000-of-01024`; ArrayRecord shards are `train-00000-of-01024.array_record`,
# which TensorFlow Datasets reads with the file name template `{SPLIT}-{SHARD_X_OF_Y}.array_record`.
FILE_SUFFIXES = {"tfrecord": "", "array_record": ".array_record"}
DEFAULT_FILE_FORMAT = "tfrecord"

Stamp = tuple[int, int]  # (st_size, st_mtime_ns): what a file was, from stat alone, never reading it
NO_STAMP: Stamp = (-1, -1)  # the file could not be stat'ed


def file_stamp(stat: os.stat_result) -> Stamp:
    return stat.st_size, stat.st_mtime_ns


def path_stamp(path: str) -> Stamp:
    """The stamp of a local file or of an object in a bucket."""
    try:
        return file_stamp(os.stat(path)) if "://" not in path else stamp_of(path)  # os.stat: 1.28 M times
    except (OSError, UserError):  # missing or unreadable: the worker reports it as a bad image
        return NO_STAMP


@dataclass(frozen=True)
class ShardItem:
    """One image and everything its Example needs besides the pixels.

    The bytes are the file at `path`, or, when `offset` is set, `length` bytes of the
    archive at `path` starting at `offset` (an image inside an uncompressed tar).
    """

    path: str
    filename: str
    label: int
    synset: str
    text: str
    boxes: tuple[Box, ...] = ()
    offset: int | None = None
    length: int = 0
    stamp: Stamp = NO_STAMP  # (size, mtime_ns) of the file at `path` when planned

    @property
    def source(self) -> str:
        """How to name the image in a message: its path, or `archive[member]`."""
        return self.path if self.offset is None else f"{self.path}[{self.filename}]"


@dataclass(frozen=True)
class ShardSpec:
    """Everything needed to write one shard; the worker is a pure function of this."""

    split: str
    index: int
    num_shards: int
    output_dir: str
    image: ImageOptions
    items: tuple[ShardItem, ...]
    index_dir: str | None = None  # where the DALI index goes; None: no index
    file_format: str = DEFAULT_FILE_FORMAT  # a key of FILE_SUFFIXES

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index, self.num_shards, self.file_format)

    def digest(self, stamps: Sequence[Stamp] | None = None) -> str:
        """Identifies what the shard is made from: the image options and, per image, its labels and
        boxes, where its bytes lie (file, or archive with offset and length) and the file's stamp.

        `stamps` replaces the items' planned stamps: the worker passes those of the files it read.
        """
        stamps = [item.stamp for item in self.items] if stamps is None else stamps
        content = [self.image.as_dict()] + [
            [item.path, item.offset, item.length, list(stamp), item.filename, item.label, item.synset, item.text,
             item.boxes]
            for item, stamp in zip(self.items, stamps, strict=True)
        ]
        return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def shard_name(split: str, index: int, num_shards: int, file_format: str = DEFAULT_FILE_FORMAT) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}{FILE_SUFFIXES[file_format]}"


def shard_file_format(name: str) -> str:
    """The record format of a shard file, by its name's suffix."""
    return next((fmt for fmt, suffix in FILE_SUFFIXES.items() if suffix and name.endswith(suffix)), DEFAULT_FILE_FORMAT)


def split_shard_name(name: str) -> tuple[str, int, int]:
    """(split, index, shard count) of a shard name, with or without its format's suffix."""
    stem = name.removesuffix(FILE_SUFFIXES[shard_file_format(name)])
    split, index, _, total = stem.rsplit("-", 3)
    return split, int(index), int(total)


def shuffle_order(names: list[str], seed: int = SHUFFLE_SEED) -> np.ndarray:
    """A permutation of range(len(names)) that depends only on the names and the shuffle seed.

    Sorting by a keyed hash of each name gives the same order whatever the listing
    order, the Python version or the machine. A name is hashed as its file-system bytes, so a
    name that is not UTF-8 (a str with surrogate escapes) is hashed as the bytes on disk.
    """
    key = str(seed).encode()
    hashes = np.fromiter(
        (int.from_bytes(hashlib.blake2b(os.fsencode(n), digest_size=8, key=key).digest(), "little") for n in names),
        dtype=np.uint64,
        count=len(names),
    )
    return np.argsort(hashes, kind="stable").astype(np.int64)


def trial_subset(images: SplitImages, count: int) -> SplitImages:
    """`--max_images_per_split`: the `count` images that come first in the shuffle, so a trial build mixes
    the classes as the full one does; the same images on every run."""
    if len(images) <= count:
        return images
    return images.subset(np.sort(shuffle_order(images.names)[:count]))


def shard_bounds(num_items: int, num_shards: int) -> np.ndarray:
    """Shard k holds order[bounds[k]:bounds[k+1]]; sizes differ by at most one."""
    return np.arange(num_shards + 1, dtype=np.int64) * num_items // num_shards


@dataclass(frozen=True)
class SplitPlan:
    split: str
    images: SplitImages
    order: np.ndarray
    bounds: np.ndarray

    @property
    def num_shards(self) -> int:
        return len(self.bounds) - 1

    def shard_sizes(self) -> list[int]:
        return np.diff(self.bounds).tolist()

    def specs(self, classes: ClassTable, boxes: dict[str, list[Box]], output_dir: Path, image: ImageOptions,
              index_dir: Path | None = None, file_format: str = DEFAULT_FILE_FORMAT) -> Iterator[ShardSpec]:
        for index in range(self.num_shards):
            yield self.spec(index, classes, boxes, output_dir, image, index_dir, file_format=file_format)

    def _positions(self, index: int) -> np.ndarray:
        return self.order[self.bounds[index] : self.bounds[index + 1]]

    def _paths(self, positions: list[int]) -> list[str]:
        """The file that holds each image: its own, or the archive. One string join each, not os.path.join:
        it is done 14 M times for ImageNet-21k."""
        root = str(self.images.root)
        if self.images.members is not None:
            return [root] * len(positions)
        prefix, names = os.path.join(root, ""), self.images.names
        return [prefix + names[p] for p in positions]

    def stamps(self, index: int) -> np.ndarray:
        """int64 (n, 2): each image's file stamp, in shard order; one stat per file (one per archive)."""
        positions = self._positions(index)
        if self.images.stamps is not None:  # from a bucket's listing: no request per image
            return self.images.stamps[positions]
        if self.images.members is not None:
            return np.tile(np.asarray(path_stamp(str(self.images.root)), dtype=np.int64), (len(positions), 1))
        return np.asarray([path_stamp(path) for path in self._paths(positions.tolist())],
                          dtype=np.int64).reshape(-1, 2)

    def spec(self, index: int, classes: ClassTable, boxes: dict[str, list[Box]], output_dir: Path, image: ImageOptions,
             index_dir: Path | None = None, stamps: np.ndarray | None = None,
             file_format: str = DEFAULT_FILE_FORMAT) -> ShardSpec:
        """Shard `index` as data; `stamps` (from `stamps(index)`) saves stat'ing its files again."""
        stamps = self.stamps(index) if stamps is None else stamps
        positions = self._positions(index)
        listed = positions.tolist()
        locations = (self.images.members[positions].tolist() if self.images.members is not None
                     else [(None, 0)] * len(listed))  # (offset, length) in the archive; none for a file of its own
        items = []
        for position, class_index, path, (offset, length), stamp in zip(
                listed, self.images.classes[positions].tolist(), self._paths(listed), locations, stamps.tolist(),
                strict=True):
            filename = self.images.names[position].rsplit("/", 1)[-1]
            items.append(
                ShardItem(
                    path=path,
                    filename=filename,
                    label=classes.label(class_index),
                    synset=classes.wnids[class_index],
                    text=classes.texts[class_index],
                    boxes=tuple(boxes.get(filename, ())),
                    offset=offset,
                    length=length,
                    stamp=tuple(stamp),
                )
            )
        return ShardSpec(self.split, index, self.num_shards, str(output_dir), image, tuple(items),
                         str(index_dir) if index_dir is not None else None, file_format)


def plan_split(split: str, images: SplitImages, num_shards: int, seed: int = SHUFFLE_SEED) -> SplitPlan:
    if num_shards < 1:
        raise UserError(f"--{split}_shards must be at least 1, got {num_shards}")
    if len(images) < num_shards:
        raise UserError(
            f"{images.root}: the {split} split has {len(images)} images, fewer than its {num_shards} shards; "
            f"lower --{split}_shards"
        )
    return SplitPlan(split, images, shuffle_order(images.names, seed), shard_bounds(len(images), num_shards))
