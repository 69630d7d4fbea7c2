"""Byte progress for downloads, hashing and unpacking: a tqdm bar (bytes/s, ETA) on a terminal."""

from __future__ import annotations

import sys
from typing import BinaryIO

from tqdm import tqdm


def byte_bar(description: str, total: int | None, initial: int = 0) -> tqdm:
    """A bar in bytes with rate and ETA; silent when stderr is not a terminal (the log says what happened)."""
    return tqdm(total=total, initial=initial, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
                dynamic_ncols=True, disable=not sys.stderr.isatty())


class CountingReader:
    """A read-only file wrapper that advances a bar by the bytes read (tarfile reads archives through it)."""

    def __init__(self, raw: BinaryIO, bar: tqdm) -> None:
        self.raw = raw
        self.bar = bar

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.bar.update(len(data))
        return data
