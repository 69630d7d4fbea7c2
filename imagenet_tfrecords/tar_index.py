"""The ILSVRC tarballs read in place: member indexes of the image tars, boxes from the bbox tar.

An uncompressed tar is 512-byte headers, each followed by its member's data padded to 512 bytes,
so an index reads the headers only and seeks past the data. The train tar holds one `<wnid>.tar`
per class; each is indexed where it lies inside the outer tar, so every JPEG becomes an
(offset, length) slice of the one big file, read later with pread. An index is kept in
`<output>/.tar_index/`, named after the tar's size and mtime, so a resumed build does not scan
again.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import logging
import os
import re
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np

from .download.unpack import BOUNDING_BOX_CSV, UnpackOptions, convert_bounding_boxes, safe_path
from .errors import UserError
from .labels import Box, load_bounding_boxes
from .sources import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

INDEX_DIR = ".tar_index"
INDEX_VERSION = 1
CLASS_ARCHIVE = re.compile(r"(n\d{8})\.tar")
END_OF_ARCHIVE = bytes(tarfile.BLOCKSIZE)


@dataclass(frozen=True)
class TarIndex:
    """The images of one tar: names as the extracted tree would list them, and their (offset, length)."""

    path: Path
    names: list[str]  # `<wnid>/<file>` for the train tar, the file name for a flat tar; sorted
    members: np.ndarray  # int64 (N, 2), parallel to `names`


class _Window(io.RawIOBase):
    """A read-only view of `length` bytes of `raw` from `start`: a class tar inside the train tar."""

    def __init__(self, raw: io.BufferedReader, start: int, length: int) -> None:
        super().__init__()
        self._raw, self._start, self._length, self._position = raw, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size: int = -1) -> bytes:
        end = self._length if size < 0 else min(self._length, self._position + size)
        if end <= self._position:
            return b""
        self._raw.seek(self._start + self._position)
        data = self._raw.read(end - self._position)
        self._position += len(data)
        return data


def _damaged(label: str, why: str) -> UserError:
    return UserError(f"{label}: {why}; the archive is damaged or incomplete, get it again")


def _members(fileobj: io.RawIOBase | io.BufferedReader, size: int, label: str) -> list[tarfile.TarInfo]:
    """The regular-file members of a tar of `size` bytes, from its headers; a UserError when damaged.

    tarfile seeks over member data (it reads one byte at the end of each to detect truncation);
    a header that ends the listing early must be the zero block that ends an archive.
    """
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r:")
        files = []
        for member in tar:
            if safe_path(member, label) is None:
                continue
            if member.offset_data + member.size > size:
                raise _damaged(label, f"member {member.name!r} runs past the end (truncated)")
            files.append(member)
    except tarfile.TarError as exc:
        raise _damaged(label, f"not a readable tar ({exc})") from None
    fileobj.seek(tar.offset)
    if fileobj.read(tarfile.BLOCKSIZE) != END_OF_ARCHIVE:
        raise _damaged(label, f"no valid tar header at byte {tar.offset} (truncated or corrupt)")
    return files


def _images(members: list[tarfile.TarInfo], label: str) -> list[tarfile.TarInfo]:
    """Members the extracted-tree scan would take: top-level, not hidden, with an image extension."""
    images, others = [], []
    for member in members:
        path = PurePosixPath(member.name)
        if len(path.parts) != 1 or path.name.startswith("."):
            continue
        (images if path.suffix.lower() in IMAGE_EXTENSIONS else others).append(member)
    if others:
        log.warning("%s: ignored %d member(s) without an image extension, e.g. %s", label, len(others), others[0].name)
    return images


def _scan_train(path: Path, size: int) -> tuple[list[str], list[tuple[int, int]]]:
    entries: list[tuple[str, int, int]] = []
    classes = 0
    with open(path, "rb") as raw:
        for member in _members(raw, size, str(path)):
            match = CLASS_ARCHIVE.fullmatch(PurePosixPath(member.name).name)
            if not match:
                log.warning("%s: skipped %s (not a <wnid>.tar)", path, member.name)
                continue
            wnid, label = match.group(1), f"{path}[{member.name}]"
            window = _Window(raw, member.offset_data, member.size)
            images = _images(_members(window, member.size, label), label)
            if not images:
                raise UserError(f"{label}: class archive has no images; the archive is damaged, get it again")
            entries.extend((f"{wnid}/{m.name}", member.offset_data + m.offset_data, m.size) for m in images)
            classes += 1
    if not classes:
        raise UserError(f"{path}: holds no <wnid>.tar class archives; pass ILSVRC2012_img_train.tar as --train_tar")
    entries.sort()
    log.info("%s: indexed %d images in %d class archives", path, len(entries), classes)
    return [e[0] for e in entries], [e[1:] for e in entries]


def _scan_flat(path: Path, size: int) -> tuple[list[str], list[tuple[int, int]]]:
    with open(path, "rb") as raw:
        images = _images(_members(raw, size, str(path)), str(path))
    entries = sorted((m.name, m.offset_data, m.size) for m in images)
    log.info("%s: indexed %d images", path, len(entries))
    return [e[0] for e in entries], [e[1:] for e in entries]


def _cache_path(path: Path, cache_dir: Path, suffix: str) -> Path:
    stat = path.stat()
    return cache_dir / f"{path.name}.{stat.st_size}.{stat.st_mtime_ns}.v{INDEX_VERSION}{suffix}"


def _replace_cache(cache: Path, tar: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write a kept index atomically with `write(handle)`, removing those of older copies of `tar`."""
    for stale in cache.parent.glob(f"{glob.escape(tar.name)}.*"):
        if stale != cache:
            stale.unlink(missing_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache.parent, prefix=".", suffix=".tmp", delete=False) as handle:
        write(handle)
    os.replace(handle.name, cache)


def index_tar(path: Path, cache_dir: Path, nested: bool) -> TarIndex:
    """Index a tar of per-class tars (`nested`) or a flat tar of images, reusing a kept index."""
    path = Path(path).resolve()
    try:
        size = path.stat().st_size
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{exc.filename}: {exc.strerror}; pass the right path") from None
    cache = _cache_path(path, cache_dir, ".npz")
    if cache.is_file():
        with np.load(cache) as kept:
            text, members = bytes(kept["names"]).decode(), kept["members"]
        names = text.split("\n") if text else []
        log.info("%s: using the index kept in %s", path, cache)
        return TarIndex(path, names, members)
    log.info("%s: indexing (reading the tar headers only)", path)
    names, offsets = (_scan_train if nested else _scan_flat)(path, size)
    members = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    blob = np.frombuffer("\n".join(names).encode(), dtype=np.uint8)
    _replace_cache(cache, path, lambda handle: np.savez(handle, names=blob, members=members))
    return TarIndex(path, names, members)


def load_bounding_box_tar(path: Path, cache_dir: Path, synsets: frozenset[str]) -> dict[str, list[Box]]:
    """Boxes straight from the bbox tar's XML, by the same code and rules (and rounding) as the CSV."""
    path = Path(path).resolve()
    if not path.is_file():
        raise UserError(f"{path}: bounding box archive not found; pass the right --bbox_tar")
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256("\n".join(sorted(synsets)).encode()).hexdigest()[:12]
    cache = _cache_path(path, cache_dir, f".{digest}.csv")
    if not cache.is_file():
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".") as work:
            try:
                convert_bounding_boxes(path, Path(work), UnpackOptions(False, (), Path(), synsets))
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise _damaged(str(path), f"not a readable tar.gz ({exc})") from None
            _replace_cache(cache, path, lambda handle: handle.write((Path(work) / BOUNDING_BOX_CSV).read_bytes()))
    return load_bounding_boxes(cache)
