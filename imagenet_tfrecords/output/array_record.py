"""ArrayRecord shards (`--output_format array_record`): the same serialized tf.train.Example records as a
TFRecord shard, in an ArrayRecord file that Grain and TensorFlow Datasets read with random access.

The `array-record` package is a runtime extra (`pip install "imagenet-tfrecords[array_record]"`),
imported only when that format is asked for. There is no DALI index for this format: the file
carries its own record index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from ..errors import UserError
from ..storage.atomic import atomic_path, cannot_write

ARRAY_RECORD = "array_record"
PACKAGE = "array-record"  # its pip name; it imports as `array_record`
INSTALL_HINT = 'pip install "imagenet-tfrecords[array_record]"'
# One record per chunk, as TensorFlow Datasets' ArrayRecordFileAdapter writes: each record is read alone.
WRITER_OPTIONS = "group_size:1"
# No read-ahead: the reader's options for random access (array_record_module.ArrayRecordReader's docs).
READER_OPTIONS = "readahead_buffer_size:0,max_parallelism:0"
HASH_BLOCK = 8 << 20  # 8 MiB reads when hashing a written shard


def array_record_module() -> ModuleType:
    """array_record's reader and writer; missing, one line saying what to install."""
    try:
        from array_record.python import array_record_module as module
    except ImportError as exc:
        raise UserError(f"--output_format array_record needs the {PACKAGE} package: {INSTALL_HINT} [{exc}]") from None
    return module


def write_array_record(final: Path, payloads: Iterable[bytes]) -> tuple[int, int, str]:
    """Write `payloads` as the ArrayRecord file `final`, whole or not at all (through `atomic_path`).

    Returns the record count, and the size and SHA-256 of the file as written.
    """
    module = array_record_module()
    records = 0
    with atomic_path(final, "the shard") as temporary:
        writer = module.ArrayRecordWriter(str(temporary), WRITER_OPTIONS)
        try:
            for payload in payloads:
                writer.write(payload)
                records += 1
        except RuntimeError as exc:  # the writer's failures (a full disk) are RuntimeErrors naming the file
            raise cannot_write(final, "the shard", str(exc)) from None
        finally:
            try:
                writer.close()
            except RuntimeError as exc:
                raise cannot_write(final, "the shard", str(exc)) from None
        size, sha256 = file_digest(temporary)
    return records, size, sha256


def file_digest(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a file."""
    checksum = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            checksum.update(block)
            size += len(block)
    return size, checksum.hexdigest()


def open_reader(path: Path | str):
    """An ArrayRecordReader for random access; OSError when the file is missing, ValueError when it is no
    ArrayRecord file."""
    module = array_record_module()
    if not Path(path).is_file():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    try:
        reader = module.ArrayRecordReader(str(path), READER_OPTIONS)
    except RuntimeError as exc:
        raise ValueError(str(exc)) from None
    if not reader.ok():
        raise ValueError("not an ArrayRecord file (its header or footer cannot be read)")
    return reader


def refuse_dali_index(shard_dir: Path | str, output_format: str) -> None:
    """`--write_index` makes DALI indexes of TFRecord shards only: one line for ArrayRecord ones."""
    directory = Path(shard_dir)
    held = directory.is_dir() and any(p.name.endswith(".array_record") for p in directory.iterdir())
    if output_format == ARRAY_RECORD or held:
        raise UserError(f"{shard_dir}: --write_index makes DALI indexes of TFRecord shards; ArrayRecord shards "
                        "index their own records and have none")
