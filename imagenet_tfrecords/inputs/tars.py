"""The ILSVRC tarballs read in place: the image tars as the train and validation splits, boxes from the bbox tar.

An uncompressed tar is 512-byte headers, each followed by its member's data padded to 512 bytes,
so an index reads the headers only and seeks past the data. The train tar holds one `<wnid>.tar`
per class; each is indexed where it lies inside the outer tar, so every JPEG becomes an
(offset, length) slice of the one big file, read later with pread. An index is kept in
`<output>/.tar_index/`, named after the tar's size and mtime, so a resumed build does not scan
again.

A tar in a bucket is indexed the same way through ranged reads of its headers (a small block
read ahead holds a member's last byte, which tarfile checks, and the next header), never
downloaded whole; its images are then read by ranged reads at their offsets.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import tarfile
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np

from ..errors import UserError, printable
from ..storage.folders import Folder, LocalFolder, folder
from ..storage.urls import is_url, join, open_url, stamp_of
from .bounding_boxes import BOUNDING_BOX_CSV, convert_bounding_boxes
from .folders import cannot_read, resolve, scan_flat_validation
from .ilsvrc_names import CLASS_ARCHIVE
from .labels import Box, ClassTable, load_bounding_boxes
from .split_images import Ignored, SplitImages, is_image_name, where
from .tar_members import safe_path
from .validation_labels import FlatLabels

log = logging.getLogger(__name__)

INDEX_DIR = ".tar_index"
INDEX_VERSION = 2  # 2: names kept as bytes with their lengths, and the entries not taken
HEADER_BLOCK_BYTES = 64 << 10  # a tar in a bucket: one ranged read of 64 KiB per member, about
INDEX_THREADS = 32  # a tar of class tars in a bucket: this many class tars indexed at once
END_OF_ARCHIVE = bytes(tarfile.BLOCKSIZE)


@dataclass(frozen=True)
class TarIndex:
    """The images of one tar: names as the extracted tree would list them, and their (offset, length)."""

    path: Path | str  # a local path or a URL
    names: list[str]  # `<wnid>/<file>` for the train tar, the file name for a flat tar; sorted
    members: np.ndarray  # int64 (N, 2), parallel to `names`
    ignored: list[str]  # entries not taken, named as the extracted tree's scan names them (sources.Ignored)


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


Member = tuple[PurePosixPath, tarfile.TarInfo]  # a member and its normalised name


def _damaged(label: str, why: str) -> UserError:
    return UserError(f"{label}: {why}; the archive is damaged or incomplete, get it again")


def _members(fileobj: io.RawIOBase | io.BufferedReader, size: int, label: str) -> list[Member]:
    """The files and folders of a tar of `size` bytes, by normalised name (`./x` is `x`; the archive's own `./`
    left out), from its headers; a UserError when damaged, unsafe or sparse.

    tarfile seeks over member data (it reads one byte at the end of each to detect truncation);
    a header that ends the listing early must be the zero block that ends an archive.
    """
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r:")
        found = []
        for member in tar:
            safe_path(member, label)  # refuses links, devices, absolute names and `..`
            if member.issparse():  # its data in the tar is not the file's bytes: pread would read the wrong ones
                raise UserError(f"{label}: member {printable(member.name)} is a sparse file, which cannot be read "
                                "in place; extract the tar and pass the folder, or pack it again without --sparse")
            if member.isfile() and member.offset_data + member.size > size:
                raise _damaged(label, f"member {member.name!r} runs past the end (truncated)")
            path = PurePosixPath(member.name)
            if path.parts:
                found.append((path, member))
    except tarfile.TarError as exc:
        raise _damaged(label, f"not a readable tar ({exc})") from None
    fileobj.seek(tar.offset)
    if fileobj.read(tarfile.BLOCKSIZE) != END_OF_ARCHIVE:
        raise _damaged(label, f"no valid tar header at byte {tar.offset} (truncated or corrupt)")
    return found


def _images(members: list[Member]) -> tuple[list[tuple[str, tarfile.TarInfo]], list[str]]:
    """The members the extracted-tree scan would take (image files at the top), and the entries it would not:
    other files by name, a folder (or anything in it) once as `folder/`."""
    images, ignored = [], set()
    for path, member in members:
        if len(path.parts) > 1 or member.isdir():
            ignored.add(f"{path.parts[0]}/")
        elif is_image_name(path.name):
            images.append((path.name, member))
        else:
            ignored.add(path.name)
    return images, sorted(ignored)


Scan = tuple[list[str], list[tuple[int, int]], list[str]]  # names, (offset, length) of each, entries not taken


def _open(path: Path | str) -> IO[bytes]:
    return open_url(path, HEADER_BLOCK_BYTES) if isinstance(path, str) else open(path, "rb")


def _class_images(path: str, member: tarfile.TarInfo, label: str) -> tuple[list[tuple[str, tarfile.TarInfo]], list[str]]:
    """One class tar's images, through a reader of its own (a bucket's readers are not shared between threads)."""
    with _open(path) as raw:
        return _images(_members(_Window(raw, member.offset_data, member.size), member.size, label))


def _scan_train(path: Path | str, size: int) -> Scan:
    entries: list[tuple[str, int, int]] = []
    ignored: list[str] = []
    with _open(path) as raw:
        classes = []  # (wnid, how messages name it, its member)
        for relative, member in _members(raw, size, printable(path)):
            if member.isdir():  # a folder of the outer tar holds class tars, it is not one of the tree's entries
                continue
            match = CLASS_ARCHIVE.fullmatch(relative.name)
            if match:
                classes.append((match.group(1), where(path, member.name, True), member))
            else:
                ignored.append(str(relative))
        if isinstance(path, str):  # in a bucket: a request per member, so INDEX_THREADS class tars at once
            with ThreadPoolExecutor(INDEX_THREADS, thread_name_prefix="index") as pool:
                found = list(pool.map(lambda c: _class_images(path, c[2], c[1]), classes))
        else:
            found = [_images(_members(_Window(raw, m.offset_data, m.size), m.size, label)) for _, label, m in classes]
    for (wnid, label, member), (images, inner_ignored) in zip(classes, found, strict=True):
        if not images:
            raise UserError(f"{label}: class archive has no images; the archive is damaged, get it again")
        entries.extend((f"{wnid}/{name}", member.offset_data + m.offset_data, m.size) for name, m in images)
        ignored.extend(f"{wnid}/{name}" for name in inner_ignored)
    if not classes:
        raise UserError(f"{printable(path)}: holds no <wnid>.tar class archives; "
                        "pass ILSVRC2012_img_train.tar as --train_tar")
    entries.sort()
    log.info("%s: indexed %d images in %d class archives", printable(path), len(entries), len(classes))
    return [e[0] for e in entries], [e[1:] for e in entries], ignored


def _scan_flat(path: Path | str, size: int) -> Scan:
    with _open(path) as raw:
        images, ignored = _images(_members(raw, size, printable(path)))
    entries = sorted((name, m.offset_data, m.size) for name, m in images)
    log.info("%s: indexed %d images", printable(path), len(entries))
    return [e[0] for e in entries], [e[1:] for e in entries], ignored


def _encode_names(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Names as one blob of their file-system bytes and their lengths: a name may hold any byte, a newline too."""
    encoded = [os.fsencode(name) for name in names]
    return (np.frombuffer(b"".join(encoded), dtype=np.uint8),
            np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))


def _decode_names(blob: np.ndarray, lengths: np.ndarray) -> list[str]:
    data, ends = blob.tobytes(), np.cumsum(lengths).tolist()
    return [os.fsdecode(data[start:end]) for start, end in zip([0] + ends[:-1], ends)]


def _cache_name(path: Path | str, stamp: tuple[int, int], suffix: str) -> str:
    return f"{_base_name(path)}.{stamp[0]}.{stamp[1]}.v{INDEX_VERSION}{suffix}"


def _base_name(path: Path | str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def _replace_cache(cache: Folder, name: str, tar: Path | str, data: bytes) -> None:
    """Keep an index as `name` in `cache`, removing those of older copies of `tar`."""
    stale = [kept for kept in cache.sizes() if kept.startswith(f"{_base_name(tar)}.") and kept != name]
    cache.remove(stale)
    cache.write(name, data, "the kept tar index")


def _tar_stamp(path: Path | str) -> tuple[int, int]:
    try:
        return stamp_of(path)
    except OSError as exc:
        raise UserError(f"{printable(exc.filename or path)}: {exc.strerror or 'not found'}; pass the right path") from None


def index_tar(path: Path | str, cache: Folder, nested: bool) -> TarIndex:
    """Index a tar (a path, or a URL) of per-class tars (`nested`) or a flat tar of images, reusing an
    index kept in `cache`."""
    path = path if is_url(path) else resolve(Path(path))
    if isinstance(path, Path) and path.is_dir():
        raise UserError(f"{printable(path)}: not a tar file; pass the tar itself")
    stamp = _tar_stamp(path)
    name = _cache_name(path, stamp, ".npz")
    if name in cache.sizes():
        with np.load(io.BytesIO(cache.read(name))) as kept:
            names = _decode_names(kept["names"], kept["name_lengths"])
            ignored = _decode_names(kept["ignored"], kept["ignored_lengths"])
            members = kept["members"]
        log.info("%s: using the index kept in %s", printable(path), printable(cache.url_of(name)))
        return TarIndex(path, names, members, ignored)
    log.info("%s: indexing (reading the tar headers only)", printable(path))
    try:
        names, offsets, ignored = (_scan_train if nested else _scan_flat)(path, stamp[0])
    except OSError as exc:
        raise cannot_read(path, exc) from None
    members = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    (blob, lengths), (ignored_blob, ignored_lengths) = _encode_names(names), _encode_names(ignored)
    data = io.BytesIO()
    np.savez(data, names=blob, name_lengths=lengths, members=members, ignored=ignored_blob,
             ignored_lengths=ignored_lengths)
    _replace_cache(cache, name, path, data.getvalue())
    return TarIndex(path, names, members, ignored)


def index_cache(output_dir: Path | str) -> Folder:
    """Where the tars' indexes are kept: in the output, so a resumed build (on any machine) reuses them."""
    return folder(join(output_dir, INDEX_DIR))


def scan_train_tar(tar: Path, cache: Folder, classes: ClassTable) -> SplitImages:
    """The train split read in place from the tar of `<wnid>.tar` class archives."""
    index = index_tar(tar, cache, nested=True)
    lookup = classes.index_of()
    labels = []
    for name in index.names:
        wnid = name.split("/", 1)[0]
        if wnid not in lookup:
            raise UserError(f"{printable(index.path)}[{wnid}.tar]: not a class of the labels file; "
                            "pass a --labels_file that lists it (ImageNet-21k: --labels_file imagenet21k)")
        labels.append(lookup[wnid])
    return SplitImages(index.path, index.names, np.asarray(labels, dtype=np.int32), index.members,
                       Ignored.of(index.ignored, index.path, True))


def scan_validation_tar(tar: Path, cache: Folder, classes: ClassTable, labels: FlatLabels) -> SplitImages:
    """The validation split read in place from the flat tar, labelled by `labels`."""
    index = index_tar(tar, cache, nested=False)
    if not index.names:
        raise UserError(f"{printable(index.path)}: the validation tar has no images; "
                        "pass ILSVRC2012_img_val.tar as --validation_tar")
    return scan_flat_validation(index.path, classes, index.names, labels, index.members,
                                Ignored.of(index.ignored, index.path, True))


def load_bounding_box_tar(path: Path, cache: Folder, synsets: frozenset[str]) -> dict[str, list[Box]]:
    """Boxes straight from the bbox tar's XML, by the same code and rules (and rounding) as the CSV."""
    path = resolve(path)
    if not path.is_file():
        raise UserError(f"{printable(path)}: bounding box archive not found; pass the right --bbox_tar")
    digest = hashlib.sha256("\n".join(sorted(synsets)).encode()).hexdigest()[:12]
    name = _cache_name(path, _tar_stamp(path), f".{digest}.csv")
    if name not in cache.sizes():
        with tempfile.TemporaryDirectory(prefix="imagenet-tfrecords-") as work:
            try:
                convert_bounding_boxes(path, Path(work), synsets)
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise _damaged(str(path), f"not a readable tar.gz ({exc})") from None
            _replace_cache(cache, name, path, (Path(work) / BOUNDING_BOX_CSV).read_bytes())
    if isinstance(cache, LocalFolder):
        return load_bounding_boxes(cache.path / name)
    with tempfile.TemporaryDirectory(prefix="imagenet-tfrecords-") as work:  # the CSV reader takes a file
        kept = Path(work) / BOUNDING_BOX_CSV
        kept.write_bytes(cache.read(name))
        return load_bounding_boxes(kept)
