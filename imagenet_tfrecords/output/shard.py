"""The one worker: write a single shard from its spec, atomically. Every engine runs this."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import BadImageError, UserError
from ..images.prepare import prepare_image
from ..plan.shards import ShardItem, ShardSpec, Stamp, file_stamp
from ..storage.atomic import atomic_file, write_atomically
from ..storage.folders import Bucket
from ..storage.urls import filesystem, is_url, local_path, store_errors, store_problem
from .array_record import ARRAY_RECORD, write_array_record
from .records import build_example, dali_index_line, frame_record

WRITE_BUFFER_BYTES = 8 << 20  # 8 MiB: few, large writes
FETCH_BATCH = 32  # images from a bucket: fetched this many at a time, concurrently
BUCKET_JOURNAL = "manifest.journal"  # in a bucket: a folder of one `<shard>.json` entry per finished shard


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

    def entry(self) -> dict:
        """The shard as manifest.json records it."""
        entry = asdict(self)
        entry["bad_images"] = [asdict(bad) for bad in self.bad_images]
        return entry


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


class _BucketReader:
    """Reads the items of a shard from a bucket in order, FETCH_BATCH at a time with concurrent ranged
    requests, the next batch fetched while this one is encoded. The stamps are the planned ones
    (from the listing or the tar's `info`): an object changed since then differs at the next run.

    A missing object is a bad image; any other failure of the store (credentials, network) stops
    the build with one line, so that it can never pass for bad images and be skipped.
    """

    def __init__(self, items: tuple[ShardItem, ...]) -> None:
        self.stamps: list[Stamp] = []
        self._batches = [items[i:i + FETCH_BATCH] for i in range(0, len(items), FETCH_BATCH)]
        self._fetcher = ThreadPoolExecutor(1, thread_name_prefix="fetch")
        self._pending = deque(self._fetcher.submit(self._fetch, batch) for batch in self._batches[:2])
        self._next_batch = 2
        self._current: deque[bytes | BaseException] = deque()

    @staticmethod
    def _fetch(batch: tuple[ShardItem, ...]) -> list[bytes | BaseException]:
        fs, _ = filesystem(batch[0].path)
        paths = [fs._strip_protocol(item.path) for item in batch]
        # A whole object from byte 0: one GET (without a start, s3fs asks for its size first); not an empty
        # one, which no range fits (it is then a bad image, not a store error).
        starts = [item.offset if item.offset is not None else (0 if item.stamp[0] > 0 else None) for item in batch]
        ends = [None if item.offset is None else item.offset + item.length for item in batch]
        with store_errors(batch[0].path, "read the images"):
            return fs.cat_ranges(paths, starts, ends, on_error="return")

    def read(self, item: ShardItem) -> bytes:
        self.stamps.append(item.stamp)
        if not self._current:
            self._current.extend(self._pending.popleft().result())
            if self._next_batch < len(self._batches):
                self._pending.append(self._fetcher.submit(self._fetch, self._batches[self._next_batch]))
                self._next_batch += 1
        data = self._current.popleft()
        if isinstance(data, FileNotFoundError):
            raise BadImageError(item.source, "not found in the bucket (deleted since the listing?)")
        if isinstance(data, BaseException):
            raise UserError(f"{item.source}: cannot read the image ({store_problem(data)}); "
                            "check the bucket and your credentials, then run the same command again")
        if item.offset is not None and len(data) != item.length:
            raise BadImageError(item.source, "the archive ends inside this member (truncated archive)")
        return data

    def close(self) -> None:
        self._fetcher.shutdown(wait=True, cancel_futures=True)


def _reader(items: tuple[ShardItem, ...]) -> _ImageReader | _BucketReader:
    """A split's images are all local or all in one bucket."""
    return _BucketReader(items) if items and is_url(items[0].path) else _ImageReader()


def write_shard(spec: ShardSpec, skip_bad_images: bool = False) -> ShardResult:
    """Write the shard of `spec` (and its DALI index, when asked for) so that it appears whole or not at all.

    The records are TFRecord-framed, or an ArrayRecord file (`spec.file_format`, see `array_record`;
    that format has no DALI index).

    Into a local folder: through a temporary of its own, fsync'd and renamed to the shard's name,
    its index renamed just before it, so a finished shard always has its index. Into a bucket: a
    finished local copy is uploaded (see `_publish`). A bad image raises BadImageError, or with
    `skip_bad_images` is left out and reported in the result.
    """
    output = local_path(spec.output_dir)
    if output is not None:
        index_file = index_path(spec.index_dir, spec.name) if spec.index_dir is not None else None
        return _write(spec, output / spec.name, index_file, skip_bad_images)
    with tempfile.TemporaryDirectory(prefix="imagenet-tfrecords-") as spool:  # the index's bucket is the shard's kind
        index_file = index_path(spool, spec.name) if spec.index_dir is not None else None
        result = _write(spec, Path(spool) / spec.name, index_file, skip_bad_images)
        _publish(spec, result, Path(spool) / spec.name, index_file)
    return result


def _publish(spec: ShardSpec, result: ShardResult, shard_file: Path, index_file: Path | None) -> None:
    """Upload a finished shard and its index to the bucket.

    The shard's manifest entry is written first, so every shard object in the bucket is one its
    manifest vouches for (a killed upload leaves the entry and no object: the shard is written
    again); an older object of the same name is deleted before that, so the new entry can never
    stand beside it. The index goes up before the shard, as on disk.
    """
    output = Bucket(spec.output_dir)
    output.remove([spec.name])
    output.write(f"{BUCKET_JOURNAL}/{spec.name}.json", json.dumps(result.entry(), sort_keys=True),
                 "the finished shard's manifest entry")
    if index_file is not None:
        Bucket(spec.index_dir).upload(index_file, index_file.name, "the DALI index")
    output.upload(shard_file, spec.name, "the shard")


def _write(spec: ShardSpec, final: Path, index_file: Path | None, skip_bad_images: bool) -> ShardResult:
    """Write the shard to `final` and its index to `index_file`, each through `atomic`."""
    bad: list[BadImage] = []
    reader = _reader(spec.items)
    try:
        examples = _examples(spec, reader, skip_bad_images, bad)
        if spec.file_format == ARRAY_RECORD:
            records, size, sha256 = write_array_record(final, examples)
        else:
            records, size, sha256 = _write_tfrecord(final, index_file, examples)
    finally:
        reader.close()
    return ShardResult(spec.split, spec.index, spec.name, spec.digest(reader.stamps), records, size, sha256, tuple(bad))


def _examples(spec: ShardSpec, reader: _ImageReader | _BucketReader, skip_bad_images: bool,
              bad: list[BadImage]) -> Iterator[bytes]:
    """Each image's serialized Example, in shard order; a bad image raises, or is noted in `bad` and left out."""
    for item in spec.items:
        try:
            image = prepare_image(reader.read(item), item.source, item.boxes, spec.image)
        except BadImageError as exc:
            if not skip_bad_images:
                raise
            bad.append(BadImage(exc.path, exc.reason))
            continue
        yield build_example(item, image)


def _write_tfrecord(final: Path, index_file: Path | None, examples: Iterator[bytes]) -> tuple[int, int, str]:
    """The TFRecord shard and its DALI index; the record count, and the shard's size and SHA-256."""
    checksum = hashlib.sha256()
    index_lines: list[str] = []
    records = size = 0
    with atomic_file(final, "the shard", WRITE_BUFFER_BYTES) as out:
        for example in examples:
            record = frame_record(example)
            out.write(record)
            checksum.update(record)
            index_lines.append(dali_index_line(size, len(record)))
            records += 1
            size += len(record)
        if index_file is not None:
            write_atomically(index_file, "".join(index_lines), "the DALI index")
    return records, size, checksum.hexdigest()
