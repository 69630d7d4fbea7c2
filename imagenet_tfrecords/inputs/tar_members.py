"""Tar members taken only when safe: a regular file or folder under a relative name.

Links, devices, absolute names and `..` are refused (path traversal), both where a tar is read in
place and where one is unpacked, so nothing is read or written outside it. `stream_tar` reads a
tar or tar.gz front to back, for the unpacking and for `--bbox_tar`.
"""

from __future__ import annotations

import gzip
import re
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from ..errors import UserError
from ..progress import CountingReader, byte_bar

GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 1 << 20  # reads and copies of members


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


@contextmanager
def stream_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """Read a tar (or tar.gz) front to back, with a progress bar over the archive's bytes.

    A tar.gz cut short raises EOFError once its tar has been read: tarfile alone ends such a stream
    quietly at the last whole member, which would pass off part of the archive as all of it.
    """
    with open(path, "rb") as raw, byte_bar(f"unpack {path.name}", path.stat().st_size) as bar:
        gzipped = raw.read(len(GZIP_MAGIC)) == GZIP_MAGIC
        raw.seek(0)
        reader = CountingReader(raw, bar)
        source = gzip.GzipFile(fileobj=reader, mode="rb") if gzipped else reader
        with tarfile.open(fileobj=source, mode="r|" if gzipped else "r|*") as tar:
            yield tar
        while gzipped and source.read(CHUNK_BYTES):  # to the stream's end: GzipFile raises EOFError if cut short
            pass
