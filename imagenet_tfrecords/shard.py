"""The one worker: write a single shard from its spec, atomically. Every engine runs this."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_file, write_atomically
from .errors import BadImageError
from .imaging import prepare_image
from .plan import ShardItem, ShardSpec, Stamp, file_stamp
from .records import build_example, dali_index_line, frame_record

WRITE_BUFFER_BYTES = 8 << 20  # 8 MiB: few, large writes


@dataclass(frozen=True)
class BadImage:
    path: str
    reason: str


@dataclass(frozen=True)
class ShardResult:
    split: str
    index: int
    name: str
    digest: str
    records: int
    size: int
    sha256: str
    bad_images: tuple[BadImage, ...]


def index_path(index_dir: str | Path, shard: str) -> Path:
    return Path(index_dir) / f"{shard}.idx"


class _ImageReader:
    """Reads each item's bytes: a whole file, or a slice of an archive (kept open, read with pread).

    It notes, per item, the stamp of the file the bytes came from, by fstat on the open file
    before reading: the shard's digest then describes what was read even if a file changed after
    the plan, and a file changed during the read differs from its stamp at the next run.
    """

    def __init__(self) -> None:
        self._archives: dict[str, tuple[int, Stamp]] = {}
        self.stamps: list[Stamp] = []

    def read(self, item: ShardItem) -> bytes:
        self.stamps.append(item.stamp)  # kept when the file cannot be opened
        try:
            if item.offset is None:
                with open(item.path, "rb") as handle:
                    self.stamps[-1] = file_stamp(os.fstat(handle.fileno()))
                    return handle.read()
            if item.path not in self._archives:
                fd = os.open(item.path, os.O_RDONLY)
                self._archives[item.path] = fd, file_stamp(os.fstat(fd))
            fd, self.stamps[-1] = self._archives[item.path]
            data = os.pread(fd, item.length, item.offset)
        except OSError as exc:
            raise BadImageError(item.source, f"cannot read the file ({exc.strerror})") from None
        if len(data) != item.length:
            raise BadImageError(item.source, "the archive ends inside this member (truncated archive)")
        return data

    def close(self) -> None:
        for fd, _ in self._archives.values():
            os.close(fd)
        self._archives.clear()


def write_shard(spec: ShardSpec, skip_bad_images: bool = False) -> ShardResult:
    """Write `spec` to a temporary of its own, fsync it, then rename it to the final shard name.

    The DALI index (when asked for) is written the same way and renamed just before the shard,
    so a finished shard always has its index. A bad image raises BadImageError, or with
    `skip_bad_images` is left out and reported in the result.
    """
    final = Path(spec.output_dir) / spec.name
    checksum = hashlib.sha256()
    bad: list[BadImage] = []
    index_lines: list[str] = []
    records = size = 0
    reader = _ImageReader()
    try:
        with atomic_file(final, "the shard", WRITE_BUFFER_BYTES) as out:
            for item in spec.items:
                try:
                    image = prepare_image(reader.read(item), item.source, item.boxes, spec.image)
                except BadImageError as exc:
                    if not skip_bad_images:
                        raise
                    bad.append(BadImage(exc.path, exc.reason))
                    continue
                record = frame_record(build_example(item, image))
                out.write(record)
                checksum.update(record)
                index_lines.append(dali_index_line(size, len(record)))
                records += 1
                size += len(record)
            if spec.index_dir is not None:
                write_atomically(index_path(spec.index_dir, spec.name), "".join(index_lines), "the DALI index")
    finally:
        reader.close()
    return ShardResult(spec.split, spec.index, spec.name, spec.digest(reader.stamps), records, size,
                       checksum.hexdigest(), tuple(bad))
