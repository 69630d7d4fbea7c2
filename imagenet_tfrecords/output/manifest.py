"""The output directory's record of a build: `manifest.json` and its journal; drives resume.

`manifest.json` holds the options, each split's plan and every finished shard (digest, records,
size, SHA-256, bad images). While a build runs, each finished shard is appended to
`manifest.journal` as one JSON line (and fsync'd) rather than rewriting manifest.json, so recording
a shard costs the same at the 10,000th shard as at the first. The journal is folded into
manifest.json at the end of every build and when a later build opens the directory; `--verify`
reads both. A line cut short by a crash is skipped: its shard is simply written again.

In a bucket, which has no appends, the journal is a folder of one object per finished shard,
written by the worker before it uploads the shard (see `shard._publish`), and folded in the same way.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from collections.abc import Container, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TextIO

from ..errors import UserError
from ..plan.shards import DEFAULT_FILE_FORMAT, ShardSpec
from ..storage.atomic import final_name, fsync_directory, make_directory
from ..storage.folders import Bucket, Folder, folder
from ..storage.urls import local_path
from .shard import BUCKET_JOURNAL, BadImage, ShardResult

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
JOURNAL_NAME = "manifest.journal"
BAD_IMAGES_REPORT = "bad_images.tsv"
# What a reader needs, in three files (output/dataset_info): our own, and the two of a TensorFlow Datasets directory.
INFO_NAME = "imagenet_tfrecords.json"
TFDS_INFO_NAME = "dataset_info.json"
TFDS_FEATURES_NAME = "features.json"
DATASET_INFO_FILES = (INFO_NAME, TFDS_INFO_NAME, TFDS_FEATURES_NAME)
LOCK_NAME = ".lock"
FORMAT_VERSION = 2  # 2: shard digests cover each input file's size and mtime; the journal
SHARD_NAME = re.compile(r"(train|validation)-\d{5}-of-\d{5}(\.array_record)?")  # see plan/shards.FILE_SUFFIXES
# Files of a build that are written through a temporary (see `atomic`).
BUILD_FILE = re.compile(rf"{SHARD_NAME.pattern}(\.idx)?|{re.escape(MANIFEST_NAME)}|{re.escape(BAD_IMAGES_REPORT)}"
                        rf"|{'|'.join(map(re.escape, DATASET_INFO_FILES))}")


LOCK_TRIES = 3  # a lock file removed by the build that held it, just as this one took it: open it again


@contextmanager
def exclusive_lock(directory: Path) -> Iterator[None]:
    """Refuse to run two builds into one directory at once. The lock file is removed on leaving, while still
    held; a build that took the lock of a file so removed sees that it is no longer `.lock` and takes the new one."""
    path = directory / LOCK_NAME
    for _ in range(LOCK_TRIES):
        try:
            handle = open(path, "w")
        except OSError as exc:
            raise UserError(f"{directory}: cannot write into this directory ({exc.strerror}); "
                            "pass a directory you can write to") from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"{directory}: another build is writing into this directory; "
                                "wait for it or pick another") from None
            if not _is_same_file(handle, path):
                continue  # removed (or replaced) by the build that held it before
            try:
                yield
            finally:
                path.unlink(missing_ok=True)  # before the lock is released, so no one else's lock file is removed
            return
    raise UserError(f"{directory}: another build is starting in this directory; wait for it or pick another")


def _is_same_file(handle: TextIO, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def _missing_parents(path: Path) -> list[Path]:
    """`path` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for directory in (path, *path.parents):
        if directory.exists() or directory.is_symlink():
            break
        missing.append(directory)
    return missing


def _remove_if_empty(directories: list[Path]) -> None:
    """Remove each directory (deepest first) while it is empty: what a build created and left without content."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:  # not empty (it holds the build's work), or already gone
            return


@contextmanager
def claim_directories(directories: list[Path | str]) -> Iterator[None]:
    """Create each local directory a build writes into (output, index) and hold `exclusive_lock` on it;
    check that each bucket exists and takes writes (a bucket has no lock: one build per folder at a time).
    On leaving, the lock files are removed, and so is each folder created here that is still empty
    (a failed first run leaves nothing behind)."""
    with ExitStack() as stack:
        locked = set()
        for directory in directories:
            path = local_path(directory)
            if path is None:
                Bucket(str(directory)).check_writable()
                continue
            created = _missing_parents(path)
            make_directory(path)
            stack.callback(_remove_if_empty, created)
            if path.resolve() not in locked:
                stack.enter_context(exclusive_lock(path))
                locked.add(path.resolve())
        yield


def remove_stale_temporaries(directory: Path | str) -> list[str]:
    """Delete unfinished shards, indexes and reports of an interrupted run (in a bucket: abort its
    unfinished multipart uploads); returns their names."""
    path = local_path(directory)
    if path is None:
        return Bucket(str(directory)).abort_unfinished_uploads()
    removed = sorted(p.name for p in path.iterdir() if BUILD_FILE.fullmatch(final_name(p.name) or ""))
    for name in removed:
        (path / name).unlink(missing_ok=True)
    return removed


def _parse_entries(lines: Iterator[tuple[str, str]]) -> Iterator[dict]:
    """The shard entries of (where, JSON text) pairs in order; a damaged one (a crash mid-write) is skipped."""
    for where, line in lines:
        try:
            entry = json.loads(line)
            if isinstance(entry, dict) and "name" in entry:
                yield entry
                continue
        except ValueError:
            pass
        log.warning("%s is damaged (cut short by a crash); ignored, that shard will be written again", where)


def _journal_entries(output: Folder) -> Iterator[dict]:
    """The finished shards recorded since manifest.json was last written."""
    if isinstance(output, Bucket):
        names = sorted(f"{BUCKET_JOURNAL}/{name}" for name in output.sizes(BUCKET_JOURNAL))
        texts = output.read_many(names)
        yield from _parse_entries((output.url_of(name), texts[name].decode("ascii", "replace")) for name in names)
        return
    path = output.path / JOURNAL_NAME
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return
    yield from _parse_entries((f"{path}: line {number}", line) for number, line in enumerate(text.splitlines(), 1))


def read_manifest(directory: Path | str) -> dict:
    """What a build in `directory` has recorded: manifest.json with the journal's shards applied.

    OSError or ValueError when manifest.json is missing or unreadable.
    """
    output = folder(directory)
    data = json.loads(output.read(MANIFEST_NAME).decode("ascii"))
    for entry in _journal_entries(output):
        data["shards"][entry["name"]] = entry
    return data


def recorded_shard_counts(output_dir: Path | str) -> dict[str, int]:
    """The shard count of each split an earlier build planned in `output_dir` and finished a shard of (none: a
    new directory, or nothing finished to resume)."""
    try:
        data = read_manifest(output_dir)
    except (OSError, ValueError):  # no manifest yet; an unreadable one is reported when it is opened
        return {}
    begun = {entry["split"] for entry in data["shards"].values()}
    return {split: info["shards"] for split, info in data.get("splits", {}).items() if split in begun}


def _shard_files(names: Iterable[str]) -> list[str]:
    return sorted(name for name in names if SHARD_NAME.fullmatch(name))


_UNSET = object()  # an option one of the two builds does not have

# Options recorded since version 0.1.0 and their value in an older manifest that lacks them: the classes
# (unknown then, taken as this run's, as those builds did), no trial build, and TFRecord shards.
LATER_OPTIONS: dict[str, object] = {"classes": _UNSET, "max_images_per_split": None,
                                   "output_format": DEFAULT_FILE_FORMAT}


def changed_options(earlier: dict, now: dict, names: Mapping[str, str], prefix: str = "") -> list[str]:
    """`name was X, now Y` for each option that differs, named by `names` (dotted option -> the flag
    users know, e.g. `image.jpeg_quality` -> `--jpeg_q`; else the dotted name); values as JSON, an
    option one side lacks as `unset`."""
    changes = []
    for key in sorted(earlier.keys() | now.keys()):
        before, after = earlier.get(key, _UNSET), now.get(key, _UNSET)
        if isinstance(before, dict) and isinstance(after, dict):
            changes += changed_options(before, after, names, f"{prefix}{key}.")
        elif before != after:
            changes.append(f"{names.get(prefix + key, prefix + key)} was {_shown(before)}, now {_shown(after)}")
    return changes


def _shown(value: object) -> str:
    return "unset" if value is _UNSET else json.dumps(value, sort_keys=True)


class Manifest:
    """`manifest.json`: options, per-split plan and per-shard records, checksums and bad images.

    Used as a context manager: on leaving, the journal is folded into manifest.json.
    """

    def __init__(self, output: Folder, data: dict) -> None:
        self.output = output
        self.path = output.url_of(MANIFEST_NAME)  # as messages name it
        self.data = data
        self._journal: TextIO | None = None

    @classmethod
    def open(cls, output_dir: Path | str, options: dict, option_names: Mapping[str, str] | None = None) -> Manifest:
        """Load the manifest of an earlier run with the same options, or start a new one;
        `option_names` name the options in the refusal (see `changed_options`)."""
        output = folder(output_dir)
        present = output.sizes()
        if MANIFEST_NAME in present:
            try:
                data = read_manifest(output_dir)
            except (OSError, ValueError) as exc:
                raise UserError(f"{output.url_of(MANIFEST_NAME)}: unreadable manifest ({exc}); "
                                "delete it and the shards to rebuild") from None
            earlier = data.setdefault("options", {})
            for key in LATER_OPTIONS.keys() - earlier.keys():  # written before it was recorded: as its default
                earlier[key] = options[key] if LATER_OPTIONS[key] is _UNSET else LATER_OPTIONS[key]
            changed = changed_options(earlier, options, option_names or {})
            if changed and not data["shards"] and not _shard_files(present):
                log.info("%s: an earlier build with other options (%s) finished no shard; starting afresh", output,
                         "; ".join(changed))
                data = {"format_version": FORMAT_VERSION, "options": options, "shards": {}}
            elif changed:
                raise UserError(
                    f"{output}: holds a build made with other options ({'; '.join(changed)}); "
                    "run with the earlier values to resume it, use another --output_directory, "
                    "or delete its shards and manifest.json"
                )
            data["format_version"] = FORMAT_VERSION  # older entries' digests differ: those shards are redone
            manifest = cls(output, data)
        else:
            foreign = _shard_files(present)
            if foreign:
                raise UserError(
                    f"{output}: holds shards ({foreign[0]}, ...) but no {MANIFEST_NAME}; "
                    "use an empty --output_directory"
                )
            manifest = cls(output, {"format_version": FORMAT_VERSION, "options": options, "shards": {}})
        manifest.fold()  # a new journal starts empty, never after a line torn by a crash
        return manifest

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_) -> None:
        try:
            self.fold()
        except UserError as problem:
            if kind is None:
                raise
            log.warning("%s", problem)  # the error that ended the build matters more; the next run folds

    @property
    def shards(self) -> dict[str, dict]:
        return self.data["shards"]

    @property
    def splits(self) -> list[str]:
        return sorted(self.data.get("splits", {}))

    def is_complete(self, spec: ShardSpec, skip_bad_images: bool, present: Mapping[str, int],
                    indexes: Container[str]) -> bool:
        """The finished shard is there (`present`: the output folder's files and sizes) with its
        index, if asked for (`indexes`: the index folder's files), recorded, made from the same
        inputs as planned now, and left no bad image out unless this run skips bad images."""
        entry = self.shards.get(spec.name)
        return (
            entry is not None
            and entry["digest"] == spec.digest()
            and (skip_bad_images or not entry["bad_images"])
            and present.get(spec.name) == entry["size"]
            and (spec.index_dir is None or f"{spec.name}.idx" in indexes)
        )

    def record_index_directory(self, index_dir: Path | str | None) -> None:
        """Where this build writes DALI indexes (None: none), so verification knows to expect them;
        relative to the output directory when inside it, so a copied build stays consistent."""
        if index_dir is not None:
            index_dir = str(index_dir)
            inside = str(self.output) + ("/" if isinstance(self.output, Bucket) else os.sep)
            if index_dir.startswith(inside):
                index_dir = index_dir[len(inside):]
        self.data["index_directory"] = index_dir
        self.save()

    def record_split(self, split: str, images: int, shards: int, classes_present: int, classes_total: int) -> None:
        """What a split was planned as, for verification against the shards on disk."""
        self.data.setdefault("splits", {})[split] = {
            "images": images, "shards": shards, "classes_present": classes_present, "classes_total": classes_total,
        }
        self.save()

    def record(self, result: ShardResult) -> None:
        """A finished shard: one line appended to the journal and fsync'd (the shard itself already is).
        In a bucket the worker has written the shard's entry before the shard."""
        entry = result.entry()
        self.shards[result.name] = entry
        if isinstance(self.output, Bucket):
            return
        journal = self.output.path / JOURNAL_NAME
        try:
            if self._journal is None:
                self._journal = open(journal, "a", encoding="ascii")
                fsync_directory(journal.parent)
            self._journal.write(json.dumps(entry, sort_keys=True) + "\n")
            self._journal.flush()
            os.fsync(self._journal.fileno())
        except OSError as exc:
            raise UserError(f"{journal}: cannot record the finished shard {result.name} ({exc.strerror}); "
                            "make room, then run the same command again") from None

    def bad_images(self, split: str) -> list[BadImage]:
        return [
            BadImage(**bad)
            for entry in self.shards.values()
            if entry["split"] == split
            for bad in entry["bad_images"]
        ]

    def save(self) -> None:
        self.output.write(MANIFEST_NAME, json.dumps(self.data, indent=1, sort_keys=True), "the manifest")

    def fold(self) -> None:
        """Write every recorded shard into manifest.json, then drop the journal."""
        self.save()
        if isinstance(self.output, Bucket):
            self.output.remove([f"{BUCKET_JOURNAL}/{name}" for name in self.output.sizes(BUCKET_JOURNAL)])
            return
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        journal = self.output.path / JOURNAL_NAME
        if journal.exists():
            journal.unlink()
            fsync_directory(journal.parent)
