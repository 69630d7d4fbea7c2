"""The shard worker reads images from files and from slices of an uncompressed archive."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from imagenet_tfrecords.errors import BadImageError
from imagenet_tfrecords.images.prepare import ImageOptions
from imagenet_tfrecords.plan.shards import ShardItem, ShardSpec
from imagenet_tfrecords.proto.imgrec_example_pb2 import Example
from imagenet_tfrecords.output.shard import write_shard


def read_records(path: Path) -> list[Example]:
    data, offset, examples = path.read_bytes(), 0, []
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 8], "little")
        examples.append(Example.FromString(data[offset + 12 : offset + 12 + length]))
        offset += length + 16
    return examples


def tar_of(files: dict[str, bytes], path: Path) -> dict[str, tuple[int, int]]:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    with tarfile.open(path) as archive:
        return {m.name: (m.offset_data, m.size) for m in archive.getmembers()}


def item(path: Path, name: str, offset: int | None = None, length: int = 0) -> ShardItem:
    return ShardItem(str(path), name, 1, "n01440764", "tench", (), offset, length)


def test_archive_members_are_stored_byte_identical(sample, tmp_path: Path) -> None:
    files = {p.name: p.read_bytes() for p in sorted((sample.train_dir / "n01440764").iterdir())[5:8]}
    members = tar_of(files, tmp_path / "class.tar")
    items = tuple(item(tmp_path / "class.tar", name, *members[name]) for name in files)
    result = write_shard(ShardSpec("train", 0, 1, str(tmp_path), ImageOptions(), items))
    stored = [e.features.feature["image/encoded"].bytes_list.value[0] for e in read_records(tmp_path / result.name)]
    assert stored == list(files.values())


def test_a_truncated_archive_names_the_member(sample, tmp_path: Path) -> None:
    data = next((sample.train_dir / "n01440764").iterdir()).read_bytes()
    offset, length = tar_of({"n01440764_1.JPEG": data}, tmp_path / "class.tar")["n01440764_1.JPEG"]
    with open(tmp_path / "class.tar", "r+b") as handle:
        handle.truncate(offset + length // 2)
    spec = ShardSpec("train", 0, 1, str(tmp_path), ImageOptions(), (item(tmp_path / "class.tar", "n01440764_1.JPEG", offset, length),))
    with pytest.raises(BadImageError, match="truncated archive") as caught:
        write_shard(spec)
    assert caught.value.path == f"{tmp_path / 'class.tar'}[n01440764_1.JPEG]"
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / spec.name).exists()
