"""The shard plan: which image goes into which shard. Pure data, independent of the worker count."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .imaging import ImageOptions
from .labels import Box, ClassTable
from .sources import SplitImages

SHUFFLE_SEED = 12345  # the seed of the Inception script, kept for familiarity


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

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index, self.num_shards)

    def digest(self) -> str:
        """Identifies the shard's planned content (images, labels, boxes, image options)."""
        content = [self.image.as_dict()] + [
            [item.filename, item.label, item.synset, item.text, item.boxes] for item in self.items
        ]
        return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}"


def shuffle_order(names: list[str], seed: int = SHUFFLE_SEED) -> np.ndarray:
    """A permutation of range(len(names)) that depends only on the names and the seed.

    Sorting by a keyed hash of each name gives the same order whatever the listing
    order, the Python version or the machine.
    """
    key = str(seed).encode()
    hashes = np.fromiter(
        (int.from_bytes(hashlib.blake2b(n.encode(), digest_size=8, key=key).digest(), "little") for n in names),
        dtype=np.uint64,
        count=len(names),
    )
    return np.argsort(hashes, kind="stable").astype(np.int64)


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
              index_dir: Path | None = None) -> Iterator[ShardSpec]:
        for index in range(self.num_shards):
            yield self.spec(index, classes, boxes, output_dir, image, index_dir)

    def spec(self, index: int, classes: ClassTable, boxes: dict[str, list[Box]], output_dir: Path, image: ImageOptions,
             index_dir: Path | None = None) -> ShardSpec:
        items = []
        for position in self.order[self.bounds[index] : self.bounds[index + 1]]:
            relative = self.images.names[position]
            class_index = int(self.images.classes[position])
            filename = relative.rsplit("/", 1)[-1]
            if self.images.members is None:
                path, offset, length = str(self.images.root / relative), None, 0
            else:
                path, (offset, length) = str(self.images.root), map(int, self.images.members[position])
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
                )
            )
        return ShardSpec(self.split, index, self.num_shards, str(output_dir), image, tuple(items),
                         str(index_dir) if index_dir is not None else None)


def plan_split(split: str, images: SplitImages, num_shards: int, seed: int = SHUFFLE_SEED) -> SplitPlan:
    if num_shards < 1:
        raise UserError(f"--{split}_shards must be at least 1, got {num_shards}")
    if len(images) < num_shards:
        raise UserError(
            f"{images.root}: the {split} split has {len(images)} images, fewer than its {num_shards} shards; "
            f"lower --{split}_shards"
        )
    return SplitPlan(split, images, shuffle_order(images.names, seed), shard_bounds(len(images), num_shards))
