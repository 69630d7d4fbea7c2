"""The one worker: write a single shard from its spec, atomically. Every engine runs this."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import BadImageError, UserError
from .imaging import prepare_image
from .plan import ShardItem, ShardSpec
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


def temporary_path(final: Path) -> Path:
    """Where a file is written until it is complete; hidden so `train-*` globs never see it."""
    return final.with_name(f".{final.name}.tmp")


def index_path(index_dir: str | Path, shard: str) -> Path:
    return Path(index_dir) / f"{shard}.idx"


def _write_durably(path: Path, chunks: list[str]) -> None:
    with open(path, "w") as handle:
        handle.writelines(chunks)
        handle.flush()
        os.fsync(handle.fileno())


class _ImageReader:
    """Reads each item's bytes: a whole file, or a slice of an archive (kept open, read with pread)."""

    def __init__(self) -> None:
        self._archives: dict[str, int] = {}

    def read(self, item: ShardItem) -> bytes:
        try:
            if item.offset is None:
                with open(item.path, "rb") as handle:
                    return handle.read()
            if item.path not in self._archives:
                self._archives[item.path] = os.open(item.path, os.O_RDONLY)
            data = os.pread(self._archives[item.path], item.length, item.offset)
        except OSError as exc:
            raise BadImageError(item.source, f"cannot read the file ({exc.strerror})") from None
        if len(data) != item.length:
            raise BadImageError(item.source, "the archive ends inside this member (truncated archive)")
        return data

    def close(self) -> None:
        for fd in self._archives.values():
            os.close(fd)
        self._archives.clear()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_shard(spec: ShardSpec, skip_bad_images: bool = False) -> ShardResult:
    """Write `spec` to its temporary name, fsync it, then rename it to the final shard name.

    The DALI index (when asked for) is written beside it and renamed just before the shard,
    so a finished shard always has its index. A bad image raises BadImageError, or with
    `skip_bad_images` is left out and reported in the result.
    """
    final = Path(spec.output_dir) / spec.name
    temporary = temporary_path(final)
    index_final = index_path(spec.index_dir, spec.name) if spec.index_dir else None
    checksum = hashlib.sha256()
    bad: list[BadImage] = []
    index_lines: list[str] = []
    records = size = 0
    reader = _ImageReader()
    try:
        with open(temporary, "wb", buffering=WRITE_BUFFER_BYTES) as out:
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
            out.flush()
            os.fsync(out.fileno())
        if index_final is not None:
            _write_durably(temporary_path(index_final), index_lines)
            os.replace(temporary_path(index_final), index_final)
            _fsync_directory(index_final.parent)
        os.replace(temporary, final)
        _fsync_directory(final.parent)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if index_final is not None:
            temporary_path(index_final).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise UserError(f"{final}: cannot write the shard ({exc.strerror or exc})") from None
        raise
    finally:
        reader.close()
    return ShardResult(spec.split, spec.index, spec.name, spec.digest(), records, size, checksum.hexdigest(), tuple(bad))
