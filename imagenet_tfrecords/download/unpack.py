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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..inputs.bounding_boxes import boxes_from_xml, image_name, write_bounding_box_csv
from ..errors import UserError
from .archives import Archive
from .progress import CountingReader, byte_bar

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
TRAIN_MEMBER = re.compile(r"(n\d{8})\.tar")
VALIDATION_MEMBER = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")
BOUNDING_BOX_CSV = "bounding_boxes.csv"
OUTPUTS = {"train": "train", "val": "validation", "devkit": "ILSVRC2012_devkit_t12", "bbox": BOUNDING_BOX_CSV}


@dataclass(frozen=True)
class UnpackOptions:
    flat_validation: bool  # keep validation/ILSVRC2012_val_*.JPEG flat instead of validation/<wnid>/
    validation_labels: tuple[str, ...]  # line i: the wnid of ILSVRC2012_val_{i+1:08d}.JPEG
    validation_labels_file: Path
    synsets: frozenset[str]  # bounding boxes of other synsets are skipped


def _refuse(label: str, member: tarfile.TarInfo, why: str) -> UserError:
    return UserError(f"{label}: refusing member {member.name!r} ({why}); "
                     "this is not a genuine ILSVRC-2012 archive, delete it and get it again")


def safe_path(member: tarfile.TarInfo, label: str) -> PurePosixPath | None:
    """The member's relative path, None for a folder; a UserError for links, devices, absolute or `..` names."""
    if member.issym() or member.islnk():
        raise _refuse(label, member, f"a link to {member.linkname!r}")
    if not (member.isfile() or member.isdir()):
        raise _refuse(label, member, "a device, FIFO or other special file")
    name = member.name.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"[A-Za-z]:", name):
        raise _refuse(label, member, "an absolute path")
    if ".." in path.parts:
        raise _refuse(label, member, "a path leaving the target with '..'")
    if member.isdir() or not path.parts:
        return None
    return path


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    with open(dest, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK_BYTES)


@contextmanager
def _stream(path: Path) -> Iterator[tarfile.TarFile]:
    """Read a tar (or tar.gz) front to back, with a progress bar over the archive's bytes."""
    with open(path, "rb") as raw, byte_bar(f"unpack {path.name}", path.stat().st_size) as bar:
        with tarfile.open(fileobj=CountingReader(raw, bar), mode="r|*") as tar:
            yield tar


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
    with _stream(path) as outer:
        for member, _, match in _members_named(outer, TRAIN_MEMBER, path.name, "a <wnid>.tar"):
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
    with _stream(path) as tar:
        for member, relative, match in _members_named(tar, VALIDATION_MEMBER, path.name,
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
    with _stream(path) as tar:
        for member in tar:
            relative = safe_path(member, path.name)
            if relative is not None:
                _write(tar, member, target / relative)
    log.info("%s: unpacked into %s", path.name, target / OUTPUTS["devkit"])


def convert_bounding_boxes(path: Path, target: Path, options: UnpackOptions) -> None:
    """The XML annotations, read from the tar.gz without unpacking it, -> bounding_boxes.csv."""
    rows, files, annotated = [], 0, 0
    with _stream(path) as tar:
        for member in tar:
            relative = safe_path(member, path.name)
            if relative is None or relative.suffix != ".xml":
                continue
            wnid = relative.parent.name or relative.name.split("_")[0]
            if wnid not in options.synsets:
                continue
            files += 1
            try:
                boxes = boxes_from_xml(tar.extractfile(member).read(), wnid, options.synsets)
            except ValueError as problem:
                log.warning("%s: skipped %s (%s)", path.name, member.name, problem)
                continue
            annotated += bool(boxes)
            rows.extend((image_name(relative.name), box) for box in boxes)
    written = write_bounding_box_csv(target / BOUNDING_BOX_CSV, rows)
    log.info("%s: %d boxes of %d annotated images (%d XML files) in %s",
             path.name, written, annotated, files, target / BOUNDING_BOX_CSV)


UNPACKERS = {"train": unpack_train, "val": unpack_validation, "devkit": unpack_devkit, "bbox": convert_bounding_boxes}


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
