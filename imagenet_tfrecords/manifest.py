"""The output directory's manifest: build options and every finished shard; drives resume."""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from .errors import UserError
from .plan import ShardSpec
from .shard import BadImage, ShardResult, index_path

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
SHARD_NAME = re.compile(r"(train|validation)-\d{5}-of-\d{5}")
TEMPORARY_NAME = re.compile(r"\.(train|validation)-\d{5}-of-\d{5}(\.idx)?\.tmp")


@contextmanager
def exclusive_lock(output_dir: Path) -> Iterator[None]:
    """Refuse to run two builds into one directory at once."""
    with open(output_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{output_dir}: another build is writing into this directory; wait for it or pick another") from None
        yield


def remove_stale_temporaries(directory: Path) -> list[str]:
    """Delete unfinished shards and indexes left by an interrupted run; returns their names."""
    removed = sorted(p.name for p in directory.iterdir() if TEMPORARY_NAME.fullmatch(p.name))
    for name in removed:
        (directory / name).unlink()
    return removed


class Manifest:
    """`manifest.json`: options, per-split plan and per-shard records, checksums and bad images."""

    def __init__(self, path: Path, data: dict) -> None:
        self.path = path
        self.data = data

    @classmethod
    def open(cls, output_dir: Path, options: dict) -> Manifest:
        """Load the manifest of an earlier run with the same options, or start a new one."""
        path = output_dir / MANIFEST_NAME
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise UserError(f"{path}: unreadable manifest ({exc}); delete it and the shards to rebuild") from None
            if data.get("options") != options:
                changed = sorted(k for k in options.keys() | data.get("options", {}).keys()
                                 if options.get(k) != data.get("options", {}).get(k))
                raise UserError(
                    f"{output_dir}: holds a build made with other options ({', '.join(changed)}); "
                    "use another --output_directory, or delete its shards and manifest.json"
                )
            return cls(path, data)
        foreign = sorted(p.name for p in output_dir.iterdir() if SHARD_NAME.fullmatch(p.name))
        if foreign:
            raise UserError(
                f"{output_dir}: holds shards ({foreign[0]}, ...) but no {MANIFEST_NAME}; "
                "use an empty --output_directory"
            )
        manifest = cls(path, {"format_version": FORMAT_VERSION, "options": options, "shards": {}})
        manifest.save()
        return manifest

    @property
    def shards(self) -> dict[str, dict]:
        return self.data["shards"]

    def is_complete(self, spec: ShardSpec) -> bool:
        """The finished shard (and its index, if asked for) is there, recorded, and planned the same."""
        entry = self.shards.get(spec.name)
        final = Path(spec.output_dir) / spec.name
        return (
            entry is not None
            and entry["digest"] == spec.digest()
            and final.is_file()
            and final.stat().st_size == entry["size"]
            and (spec.index_dir is None or index_path(spec.index_dir, spec.name).is_file())
        )

    def record_index_directory(self, index_dir: Path | None) -> None:
        """Where this build writes DALI indexes (None: none), so verification knows to expect them;
        relative to the output directory when inside it, so a copied build stays consistent."""
        if index_dir is not None and Path(index_dir).is_relative_to(self.path.parent):
            index_dir = Path(index_dir).relative_to(self.path.parent)
        self.data["index_directory"] = str(index_dir) if index_dir is not None else None
        self.save()

    def record_split(self, split: str, images: int, shards: int, classes_present: int, classes_total: int) -> None:
        """What a split was planned as, for verification against the shards on disk."""
        self.data.setdefault("splits", {})[split] = {
            "images": images, "shards": shards, "classes_present": classes_present, "classes_total": classes_total,
        }
        self.save()

    def record(self, result: ShardResult) -> None:
        entry = asdict(result)
        entry["bad_images"] = [asdict(bad) for bad in result.bad_images]
        self.shards[result.name] = entry
        self.save()

    def bad_images(self, split: str) -> list[BadImage]:
        return [
            BadImage(**bad)
            for entry in self.shards.values()
            if entry["split"] == split
            for bad in entry["bad_images"]
        ]

    def save(self) -> None:
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(temporary, self.path)
