"""Unpack the archives, streamed and refusing unsafe members: train/<wnid>/, validation/, devkit, box CSV.

Only regular files and folders are written, each to a path this module computes under the target;
absolute names, `..`, links and devices are refused (path traversal), so nothing lands outside it.
"""

from __future__ import annotations

import gzip
import logging
import re
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..inputs.bounding_boxes import BOUNDING_BOX_CSV, convert_bounding_boxes
from ..inputs.ilsvrc_names import CLASS_ARCHIVE, FLAT_VALIDATION_NAME
from ..inputs.tar_members import CHUNK_BYTES, safe_path, stream_tar
from .archives import Archive

log = logging.getLogger(__name__)

OUTPUTS = {"train": "train", "val": "validation", "devkit": "ILSVRC2012_devkit_t12", "bbox": BOUNDING_BOX_CSV}


@dataclass(frozen=True)
class UnpackOptions:
    flat_validation: bool  # keep validation/ILSVRC2012_val_*.JPEG flat instead of validation/<wnid>/
    validation_labels: tuple[str, ...]  # line i: the wnid of ILSVRC2012_val_{i+1:08d}.JPEG
    validation_labels_file: Path
    synsets: frozenset[str]  # bounding boxes of other synsets are skipped


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    with open(dest, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK_BYTES)


def _members_named(tar: tarfile.TarFile, pattern: re.Pattern[str], archive: str,
                   expected: str) -> Iterator[tuple[tarfile.TarInfo, Path, re.Match[str]]]:
    """Safe members whose file name matches `pattern`, with their path and match; others are skipped
    with a warning (unsafe ones by safe_path, misnamed ones here)."""
    for member in tar:
        relative = safe_path(member, archive)
        if relative is None:
            continue
        match = pattern.fullmatch(relative.name)
        if not match:
            log.warning("%s: skipped %s (not %s)", archive, member.name, expected)
            continue
        yield member, relative, match


def unpack_train(path: Path, target: Path, options: UnpackOptions) -> None:
    """The tar of per-class tars -> train/<wnid>/<image>, each inner tar streamed from the outer one."""
    root, classes, images = target / OUTPUTS["train"], 0, 0
    with stream_tar(path) as outer:
        for member, _, match in _members_named(outer, CLASS_ARCHIVE, path.name, "a <wnid>.tar"):
            label = f"{path.name}:{member.name}"
            with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as inner:
                for item in inner:
                    item_path = safe_path(item, label)
                    if item_path is not None:
                        _write(inner, item, root / match.group(1) / item_path)
                        images += 1
            classes += 1
    log.info("%s: %d images of %d classes in %s", path.name, images, classes, root)


def unpack_validation(path: Path, target: Path, options: UnpackOptions) -> None:
    """The flat validation tar -> validation/<wnid>/<image> by the label file, or validation/<image>."""
    root, labels, images = target / OUTPUTS["val"], options.validation_labels, 0
    with stream_tar(path) as tar:
        for member, relative, match in _members_named(tar, FLAT_VALIDATION_NAME, path.name,
                                                      "ILSVRC2012_val_NNNNNNNN.JPEG"):
            if options.flat_validation:
                dest = root / relative.name
            else:
                number = int(match.group(1))
                if not 1 <= number <= len(labels):
                    raise UserError(f"{options.validation_labels_file}: no line {number} for {relative.name}; "
                                    "pass the right --validation_labels_file")
                dest = root / labels[number - 1] / relative.name
            _write(tar, member, dest)
            images += 1
    log.info("%s: %d images in %s", path.name, images, root)


def unpack_devkit(path: Path, target: Path, options: UnpackOptions) -> None:
    """The devkit tar.gz, as is, under the target."""
    with stream_tar(path) as tar:
        for member in tar:
            relative = safe_path(member, path.name)
            if relative is not None:
                _write(tar, member, target / relative)
    log.info("%s: unpacked into %s", path.name, target / OUTPUTS["devkit"])


def unpack_bounding_boxes(path: Path, target: Path, options: UnpackOptions) -> None:
    """The XML annotations, read from the tar.gz without unpacking it, -> bounding_boxes.csv."""
    convert_bounding_boxes(path, target, options.synsets)


UNPACKERS = {"train": unpack_train, "val": unpack_validation, "devkit": unpack_devkit, "bbox": unpack_bounding_boxes}


def unpacked_size(path: Path) -> int:
    """Bytes an unpack may write: the size of a tar, the recorded size (mod 4 GiB) of a gzip."""
    if path.name.endswith((".gz", ".tgz")):
        with open(path, "rb") as handle:
            handle.seek(-4, 2)
            return int.from_bytes(handle.read(4), "little")
    return path.stat().st_size


def unpack(archive: Archive, path: Path, target: Path, options: UnpackOptions) -> None:
    """Unpack one verified archive into `target`; a damaged or unsafe archive is a UserError."""
    try:
        UNPACKERS[archive.key](path, target, options)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as problem:
        raise UserError(f"{path}: cannot read the archive ({problem}); delete it and get it again") from None
