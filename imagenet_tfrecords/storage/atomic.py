"""Atomic, durable writes: every file the tools write appears whole or not at all, even after a power loss.

The bytes go to a hidden temporary beside the target, named afresh for each write
(`.NAME.<16 hex digits>.tmp`), so a writer left over from an earlier run can only ever rename its
own file, never one that a newer run is still writing. The temporary is fsync'd and renamed over
the target, then the directory is fsync'd so that the rename itself survives a crash.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import UserError

# `.NAME.<tag>.tmp`; also `.NAME.tmp`, as earlier versions named them.
TEMPORARY_NAME = re.compile(r"\.(?P<final>.+?)(?:\.[0-9a-f]{16})?\.tmp")


def final_name(name: str) -> str | None:
    """The file that a temporary called `name` was to become; None when `name` is no temporary."""
    match = TEMPORARY_NAME.fullmatch(name)
    return match["final"] if match else None


def make_directory(path: Path, what: str = "the directory", hint: str = "") -> None:
    """Create `path` (and its parents) if missing; an OSError becomes one line naming it, with `hint` after."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot create {what} ({exc.strerror}){hint}") from None


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path, what: str) -> Iterator[Path]:
    """A fresh temporary path, made empty, for a writer that opens files by name (ArrayRecord's, and
    `atomic_file`'s); the file left there becomes `path`, fsync'd, when the block ends without an error."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        # O_EXCL: the name is this writer's alone. Not tempfile.mkstemp: it creates files 0600,
        # which would leave shards unreadable to other users once renamed.
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        yield temporary
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        fsync_directory(path.parent)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise cannot_write(path, what, exc.strerror or str(exc)) from None
        raise


def cannot_write(path: Path, what: str, reason: str) -> UserError:
    """The one line for a file a build could not write: a full disk, a read-only folder."""
    return UserError(f"{path}: cannot write {what} ({reason}); make room or fix the permissions, then run the same "
                     "command again")


@contextmanager
def atomic_file(path: Path, what: str, buffering: int = -1) -> Iterator[BinaryIO]:
    """A binary handle whose bytes become `path` when the block ends without an error.

    On an error the temporary is removed and `path` is left as it was. An OSError (a full disk,
    a read-only directory) becomes one UserError line naming `path` and `what` it is.
    """
    with atomic_path(path, what) as temporary, open(temporary, "wb", buffering=buffering) as handle:
        yield handle


def write_atomically(path: Path, data: bytes | str, what: str) -> None:
    """Replace `path` by `data`; text is written as UTF-8, a file name that is not UTF-8 (held as
    surrogate escapes) as its original bytes."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    with atomic_file(path, what) as handle:
        handle.write(data)
