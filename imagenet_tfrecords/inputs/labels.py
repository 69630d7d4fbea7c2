"""Class metadata: synset list, human-readable text, validation labels, bounding boxes."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import UserError


def _shipped(name: str) -> Path:
    """A metadata file shipped in the package (`synsets/`, package data), as a real path.

    The package is always installed as files (a wheel is never imported zipped), so the resource is a
    Path: it can be shown as a flag's default, passed to another process, and named in messages.
    """
    return Path(resources.files("imagenet_tfrecords") / "synsets" / name)


DEFAULT_LABELS_FILE = _shipped("imagenet_lsvrc_2015_synsets.txt")
DEFAULT_METADATA_FILE = _shipped("imagenet_metadata.txt")
DEFAULT_VALIDATION_LABELS_FILE = _shipped("imagenet_2012_validation_synset_labels.txt")

# `--labels_file imagenet21k`: the 21,841 synsets of ImageNet-21k (fall11_whole.tar, one <wnid>.tar each), in
# sorted order, made from the shipped metadata (21,842 synsets: fall11 plus the one below). A file of that
# name, when there is one, is read as a labels file like any other.
IMAGENET21K = "imagenet21k"
NOT_IN_FALL11 = frozenset({"n04399382"})  # "teddy, teddy bear": an ILSVRC-2012 class fall11 has no tar for

Box = tuple[float, float, float, float]  # xmin, ymin, xmax, ymax, relative to the image


@dataclass(frozen=True)
class ClassTable:
    """The classes of a dataset in label order, with their text and label convention."""

    wnids: tuple[str, ...]
    texts: tuple[str, ...]
    label_offset: int = 1  # 1: Inception (1..N, 0 = background); 0: 0..N-1

    def index_of(self) -> dict[str, int]:
        return {wnid: i for i, wnid in enumerate(self.wnids)}

    def label(self, index: int) -> int:
        return index + self.label_offset

    def digest(self) -> str:
        """Identifies the classes and their order (the manifest keeps it: a rerun must label alike)."""
        return hashlib.sha256("\n".join(self.wnids).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def read_text(path: Path, what: str) -> str:
    """A UTF-8 text file; missing, unreadable or not UTF-8 is one line naming it as `what`."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found; pass the right path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the {what} ({exc})") from None


def _read_lines(path: Path, what: str) -> list[str]:
    return [line.strip() for line in read_text(path, what).splitlines() if line.strip()]


def imagenet21k_wnids() -> list[str]:
    """The ImageNet-21k (fall11) synsets in label order: every wnid of the shipped metadata, sorted,
    but NOT_IN_FALL11."""
    lines = _read_lines(DEFAULT_METADATA_FILE, "metadata file")
    return sorted(wnid for wnid in (line.split("\t", 1)[0] for line in lines) if wnid not in NOT_IN_FALL11)


def load_wnids(path: Path) -> list[str]:
    """Read a labels file: one class per line (an ImageNet wnid, or any name), in label order;
    IMAGENET21K names the ImageNet-21k set."""
    if Path(path) == Path(IMAGENET21K) and not Path(path).exists():
        return imagenet21k_wnids()
    wnids = _read_lines(path, "labels file")
    if not wnids:
        raise UserError(f"{path}: labels file is empty; it needs one class per line")
    repeated = [wnid for wnid, count in Counter(wnids).items() if count > 1]
    if repeated:
        raise UserError(f"{path}: labels file lists {repeated[0]} more than once")
    return wnids


def _metadata(path: Path) -> dict[str, str]:
    lookup: dict[str, str] = {}
    for number, line in enumerate(_read_lines(path, "metadata file"), 1):
        parts = line.split("\t")
        if len(parts) != 2:
            raise UserError(f"{path}:{number}: expected '<class><TAB><text>', got {line!r}")
        lookup[parts[0]] = parts[1]
    return lookup


def load_texts(path: Path, wnids: list[str]) -> list[str]:
    """Human-readable text for each class from a `<class>\t<text>` metadata file, which must cover them all."""
    lookup = _metadata(path)
    missing = [w for w in wnids if w not in lookup]
    if missing:
        named = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise UserError(f"{path}: no human-readable text for {named} ({len(missing)} of the {len(wnids)} classes "
                        "missing); add a '<class><TAB><text>' line for each, or leave out --imagenet_metadata_file "
                        "to use the class names as their text")
    return [lookup[w] for w in wnids]


def default_texts(wnids: list[str]) -> list[str]:
    """Without a metadata file: ImageNet's text for an ImageNet wnid, else the class name itself."""
    lookup = _metadata(DEFAULT_METADATA_FILE)
    return [lookup.get(w, w) for w in wnids]


def load_class_table(labels_file: Path, metadata_file: Path | None, label_offset: int) -> ClassTable:
    """The classes of a labels file; their text from `metadata_file`, or by `default_texts` when None."""
    wnids = load_wnids(labels_file)
    texts = load_texts(metadata_file, wnids) if metadata_file is not None else default_texts(wnids)
    return ClassTable(tuple(wnids), tuple(texts), label_offset)


def load_validation_labels(path: Path) -> list[str]:
    """Line i (0-based) is the wnid of ILSVRC2012_val_{i+1:08d}.JPEG."""
    return _read_lines(path, "validation label file")


def load_bounding_boxes(path: Path) -> dict[str, list[Box]]:
    """Read the Inception CSV: `<filename>,<xmin>,<ymin>,<xmax>,<ymax>` in relative coordinates."""
    boxes: dict[str, list[Box]] = {}
    for number, row in enumerate(csv.reader(read_text(path, "bounding box file").splitlines()), 1):
        if not row:
            continue
        try:
            name, *coords = row
            xmin, ymin, xmax, ymax = (float(c) for c in coords)
        except ValueError:
            raise UserError(
                f"{path}:{number}: expected '<file>,<xmin>,<ymin>,<xmax>,<ymax>', got {','.join(row)!r}"
            ) from None
        boxes.setdefault(name, []).append((xmin, ymin, xmax, ymax))
    return boxes
