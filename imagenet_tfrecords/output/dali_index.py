"""DALI index files from a shard's TFRecord framing, CRC-checked; `--write_index` for any shards."""

from __future__ import annotations

import os
import re
import struct
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from ..errors import UserError
from ..storage.atomic import make_directory, write_atomically
from ..storage.urls import READ_BLOCK_BYTES, is_url, open_url
from .records import RECORD_OVERHEAD, dali_index_line, masked_crc32c
from .shard import index_path

# The framing: docs/imagenet-facts.md, "TFRecord framing".
HEADER = struct.Struct("<QI")  # u64 length, u32 masked CRC of the length bytes
FOOTER = struct.Struct("<I")  # u32 masked CRC of the payload
# `NAME-iiiii-of-nnnnn`, as Inception, TFDS and most tools name shards; hidden files are temporaries.
SHARDED_FILE = re.compile(r"[^.].*-\d{5}-of-\d{5}(\.tfrecords?)?")


class FramingError(Exception):
    """The record starting at `offset` is truncated or fails a CRC; nothing after it can be trusted."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason


class Record(NamedTuple):
    offset: int
    header: bytes
    payload: bytes
    footer: bytes

    @property
    def size(self) -> int:
        return len(self.payload) + RECORD_OVERHEAD


def iter_records(handle: BinaryIO, file_size: int) -> Iterator[Record]:
    """Every record of an open shard, in order, with its length and data CRCs checked.

    Raises FramingError at the first record that is truncated or corrupt.
    """
    offset = 0
    while offset < file_size:
        if file_size - offset < HEADER.size:
            raise FramingError(offset, f"truncated: {file_size - offset} bytes left, "
                                       f"a record header needs {HEADER.size}")
        header = handle.read(HEADER.size)
        length, length_crc = HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc:
            raise FramingError(offset, "length CRC mismatch (corrupt record header)")
        if file_size - offset < length + RECORD_OVERHEAD:
            raise FramingError(offset, f"truncated: the record needs {length + RECORD_OVERHEAD} bytes, "
                                       f"the file ends {file_size - offset} bytes after its start")
        payload = handle.read(length)
        footer = handle.read(FOOTER.size)
        if masked_crc32c(payload) != FOOTER.unpack(footer)[0]:
            raise FramingError(offset, "data CRC mismatch (corrupt record)")
        yield Record(offset, header, payload, footer)
        offset += length + RECORD_OVERHEAD


def open_shard(path: Path | str) -> tuple[BinaryIO, int]:
    """A reader of a shard (a local file, or an object at a URL, read in large blocks) and its size."""
    if is_url(path):
        handle = open_url(path, READ_BLOCK_BYTES)
        return handle, handle.size
    handle = open(path, "rb", buffering=1 << 20)
    return handle, os.fstat(handle.fileno()).st_size


def compute_index(path: Path) -> list[tuple[int, int]]:
    """(offset, framed size) of every record of a shard, as DALI's `tfrecord2idx` would list them."""
    handle, size = open_shard(path)
    with handle:
        return [(record.offset, record.size) for record in iter_records(handle, size)]


def format_index(entries: Iterable[tuple[int, int]]) -> str:
    return "".join(dali_index_line(offset, size) for offset, size in entries)


def parse_index(text: str) -> list[tuple[int, int]]:
    """The (offset, size) pairs of a DALI index file; ValueError on a malformed line."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if len(fields) != 2 or not all(f.isdigit() for f in fields):
            raise ValueError(f"line {number}: expected '<offset> <size>', got {line!r}")
        entries.append((int(fields[0]), int(fields[1])))
    return entries


def sharded_files(directory: Path) -> list[Path]:
    """The shard files of a directory, by the `NAME-iiiii-of-nnnnn` convention, sorted."""
    return sorted(p for p in directory.iterdir() if SHARDED_FILE.fullmatch(p.name) and p.is_file())


def write_index(shard: Path, index_dir: Path) -> Path:
    """Write `index_dir/<shard>.idx` atomically; FramingError leaves nothing behind."""
    text = format_index(compute_index(shard))
    final = index_path(index_dir, shard.name)
    write_atomically(final, text, "the DALI index")
    return final


def write_index_command(shard_dir: Path, index_dir: Path | None = None) -> int:
    """`--write_index DIR`: index every shard of DIR (default into DIR/idx); exit 1 if one is corrupt."""
    shard_dir = Path(shard_dir)
    if not shard_dir.is_dir():
        raise UserError(f"{shard_dir}: not a directory; pass the directory that holds the shards")
    shards = sharded_files(shard_dir)
    if not shards:
        raise UserError(f"{shard_dir}: no shard files (NAME-00000-of-00010) to index")
    index_dir = Path(index_dir) if index_dir is not None else shard_dir / "idx"
    make_directory(index_dir)
    failed = 0
    for shard in shards:
        try:
            write_index(shard, index_dir)
        except FramingError as exc:
            failed += 1
            index_path(index_dir, shard.name).unlink(missing_ok=True)  # indexed before it was damaged
            print(f"{shard.name}: offset {exc.offset}: {exc.reason}; no index written", file=sys.stderr)
        except OSError as exc:
            raise UserError(f"{index_dir}: cannot write the index of {shard.name} ({exc.strerror})") from None
    corrupt = f"; {failed} shard{'s are' if failed > 1 else ' is'} corrupt" if failed else ""
    print(f"wrote {len(shards) - failed} index files to {index_dir}{corrupt}")
    return 1 if failed else 0
