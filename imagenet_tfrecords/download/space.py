"""Free-space checks, made before a download or an unpack starts, and sizes in words."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import UserError

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


def free_bytes(directory: Path) -> int:
    """Free bytes where `directory` is or will be (its nearest existing parent, before it is made)."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def size_text(size: int | None) -> str:
    """1536 -> '1.5 KiB', as a plan shows sizes; None -> 'size unknown'."""
    if size is None:
        return "size unknown"
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def ensure_free_space(directory: Path, needed: int, what: str, instead: str = "", at_least: bool = False) -> None:
    """UserError when `directory` has fewer than `needed` free bytes for `what`; `instead` ends the line
    with another way out; `at_least`: `needed` leaves out sizes not known yet."""
    free = free_bytes(directory)
    if needed > free:
        raise UserError(
            f"{directory}: not enough disk space to {what}: needs {'at least ' if at_least else ''}"
            f"{size_text(needed)}, {size_text(free)} free; free some space or pick another --target_dir{instead}"
        )
