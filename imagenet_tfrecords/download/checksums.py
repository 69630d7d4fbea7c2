"""MD5s: reading an `md5sum`-format file and hashing archives with a progress bar."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import UserError
from ..progress import byte_bar

MD5SUM_LINE = re.compile(r"([0-9a-fA-F]{32}) [ *](.+)")
CHUNK_BYTES = 1 << 20


def read_md5sum_file(path: Path) -> dict[str, str]:
    """`<md5>  <name>` (or `<md5> *<name>`) lines, as `md5sum` writes them -> {file name: md5}."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the checksums file ({exc.strerror}); pass the right --checksums") from None
    table: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = MD5SUM_LINE.fullmatch(line.rstrip("\r\n"))
        if not match:
            raise UserError(f"{path}:{number}: expected '<32 hex digits>  <file name>' as md5sum writes, got {line!r}")
        table[Path(match.group(2)).name] = match.group(1).lower()
    if not table:
        raise UserError(f"{path}: the checksums file lists no files")
    return table


def md5_of_file(path: Path) -> "hashlib._Hash":
    """The MD5 of a file, as a hash object that a resumed download can go on feeding."""
    digest = hashlib.md5()
    with open(path, "rb") as handle, byte_bar(f"MD5 {path.name}", path.stat().st_size) as bar:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest
