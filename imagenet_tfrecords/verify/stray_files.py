"""What a build does not write: stray files and objects in the output and index directories."""

from __future__ import annotations

from pathlib import Path

from ..inputs.tars import INDEX_DIR
from ..output.manifest import (BAD_IMAGES_REPORT, DATASET_INFO_FILES, JOURNAL_NAME, LOCK_NAME, MANIFEST_NAME,
                               SHARD_NAME)
from ..output.shard import BUCKET_JOURNAL
from ..storage.atomic import final_name
from ..storage.folders import Bucket
from ..storage.urls import is_url
from .report import VerifyReport

# What a build writes besides shards, indexes and temporaries: in its output directory, in its index directory.
# DATASET_INFO_FILES: ours and TensorFlow Datasets' dataset_info.json and features.json (output/dataset_info).
OUTPUT_FILES = (MANIFEST_NAME, JOURNAL_NAME, BAD_IMAGES_REPORT, *DATASET_INFO_FILES, INDEX_DIR, LOCK_NAME)
INDEX_DIRECTORY_FILES = (LOCK_NAME,)
SPLIT_PREFIXES = ("train-", "validation-")


def _stray_problem(name: str, is_dir: bool, in_index_dir: bool, shard_names: set[str]) -> str | None:
    """Why entry `name`, not one the build writes here, should not be there (None: an index of a shard here)."""
    if final_name(name) is not None:  # a hidden `.NAME.<tag>.tmp`: an unfinished write
        return "stray temporary file: an interrupted write; resume the build or delete it"
    stem, dot, suffix = name.rpartition(".")
    if in_index_dir and dot and suffix == "idx" and SHARD_NAME.fullmatch(stem):
        return None if stem in shard_names else "DALI index of a shard that is not there"
    kind = "directory" if is_dir else "file"
    glob_hint = " (a train-*/validation-* pattern would read it as a shard)" if name.startswith(SPLIT_PREFIXES) else ""
    return f"stray {kind}: a build does not write it{glob_hint}; move it out of this directory"


def _name_inside(directory: Path, path: Path) -> str | None:
    """The entry of `directory` that holds `path`, or None when `path` is elsewhere or `directory` itself."""
    directory, path = directory.resolve(), path.resolve()
    parts = path.relative_to(directory).parts if path.is_relative_to(directory) else ()
    return parts[0] if parts else None


def check_stray_files(directory: Path | str, index_dir: Path | str | None, shard_names: set[str],
                 report: VerifyReport) -> None:
    """Everything in the output and index directories that a build does not write there."""
    if is_url(directory):
        _stray_objects(str(directory), str(index_dir) if index_dir is not None else None, shard_names, report)
        return
    directory = Path(directory)
    index_dir = Path(index_dir) if index_dir is not None else None
    holder = _name_inside(directory, index_dir) if index_dir is not None else None
    written = {directory.resolve(): set(OUTPUT_FILES) | shard_names | ({holder} if holder else set())}
    folders = {directory.resolve(): directory}  # by resolved path: the index directory may be the output's
    if index_dir is not None:
        folders.setdefault(index_dir.resolve(), index_dir)
        written.setdefault(index_dir.resolve(), set()).update(INDEX_DIRECTORY_FILES)
    index_key = index_dir.resolve() if index_dir is not None else None
    for key, folder_path in folders.items():
        for path in sorted(folder_path.iterdir()):
            problem = (None if path.name in written[key]
                       else _stray_problem(path.name, path.is_dir(), key == index_key, shard_names))
            if problem:
                report.problem(str(path), problem)


def _stray_objects(directory: str, index_dir: str | None, shard_names: set[str], report: VerifyReport) -> None:
    """`check_stray_files` in a bucket: objects and folders (common prefixes) by name."""
    inside = index_dir[len(directory) + 1:].split("/", 1)[0] if index_dir and index_dir.startswith(directory + "/") else None
    places = {directory: set(OUTPUT_FILES) | shard_names | {BUCKET_JOURNAL} | ({inside} if inside else set())}
    if index_dir is not None:
        places.setdefault(index_dir, set())
    for place, written in places.items():
        bucket = Bucket(place)
        entries = [(name, False) for name in bucket.sizes()] + [(name, True) for name in bucket.folders()]
        for name, is_dir in sorted(entries):
            problem = None if name in written else _stray_problem(name, is_dir, place == index_dir, shard_names)
            if problem:
                report.problem(bucket.url_of(name), problem)
