"""Progress of one split: a bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time

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
