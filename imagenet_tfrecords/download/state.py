"""What is finished, kept under `<target>/.imagenet_download/`: verified archives and unpack markers.

A verified archive is remembered with its size and mtime, so a re-run does not hash 138 GB again;
a marker per archive records a finished unpack (and the options it used).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..storage.atomic import write_atomically
from .archives import Archive

STATE_DIR = ".imagenet_download"


def _state_file(target: Path, archive: Archive, suffix: str) -> Path:
    return target / STATE_DIR / f"{archive.name}.{suffix}"


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(record, indent=1) + "\n", "the download state")


def _fingerprint(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def is_verified(target: Path, archive: Archive, path: Path) -> bool:
    """True when `path` was hashed before, matched `archive.md5`, and has not changed since."""
    record = _read(_state_file(target, archive, "verified"))
    return path.is_file() and record.get("md5") == archive.md5 and record.get("file") == _fingerprint(path)


def record_verified(target: Path, archive: Archive, path: Path) -> None:
    _write(_state_file(target, archive, "verified"), {"md5": archive.md5, "file": _fingerprint(path)})


def unpack_record(target: Path, archive: Archive) -> dict:
    """The marker of a finished unpack ({} when there is none): the archive's MD5 and the options used."""
    return _read(_state_file(target, archive, "unpacked"))


def record_unpacked(target: Path, archive: Archive, options: dict) -> None:
    _write(_state_file(target, archive, "unpacked"), {"md5": archive.md5, "options": options})


def unpack_marker(target: Path, archive: Archive) -> Path:
    return _state_file(target, archive, "unpacked")
