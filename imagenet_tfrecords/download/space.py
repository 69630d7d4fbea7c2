"""Free-space checks, made before a download or an unpack starts."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import UserError

GIB = 1 << 30


def ensure_free_space(directory: Path, needed: int, what: str) -> None:
    """UserError when `directory` has fewer than `needed` free bytes for `what`."""
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise UserError(
            f"{directory}: not enough disk space to {what}: needs {needed / GIB:.2f} GiB, "
            f"{free / GIB:.2f} GiB free; free some space or pick another --target_dir"
        )
