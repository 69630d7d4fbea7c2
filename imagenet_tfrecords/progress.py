"""Progress on a terminal: a bar per split of a build (periodic log lines otherwise), and byte bars (bytes/s, ETA)
for downloads, hashing and unpacking."""

from __future__ import annotations

import logging
import sys
import time
from typing import BinaryIO

from tqdm import tqdm

log = logging.getLogger(__name__)

LOG_INTERVAL_SECONDS = 30.0


class SplitProgress:
    def __init__(self, split: str, total: int, done: int = 0) -> None:
        self.split = split
        self.total = total
        self.done = done
        self.started = time.monotonic()
        self.first = done
        self.last_log = self.started
        self.bar = tqdm(total=total, initial=done, unit="img", desc=split, dynamic_ncols=True) if sys.stderr.isatty() else None

    def advance(self, images: int) -> None:
        self.done += images
        if self.bar is not None:
            self.bar.update(images)
            return
        now = time.monotonic()
        if now - self.last_log >= LOG_INTERVAL_SECONDS or self.done >= self.total:
            self.last_log = now
            rate = (self.done - self.first) / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info("%s: %d/%d images (%.0f img/s, ETA %s)", self.split, self.done, self.total, rate, _format_seconds(eta))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _format_seconds(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


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
