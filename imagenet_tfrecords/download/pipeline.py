"""Plan what each archive still needs (data), then do it: fetch or import, verify, unpack, mark done."""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import UserError
from ..inputs.labels import DEFAULT_LABELS_FILE, load_validation_labels, load_wnids
from ..storage.atomic import make_directory
from . import state
from .archives import BUILTIN_ARCHIVES, Archive, looks_like_html
from .checksums import md5_of_file
from .fetch import ArchiveSource, download, remote_size
from .space import GIB, ensure_free_space, free_bytes, size_text
from .unpack import OUTPUTS, UnpackOptions, unpack, unpacked_size

log = logging.getLogger(__name__)

WNID = re.compile(r"n\d{8}")
# --keep: what stays on disk. The builder reads the archives in place (--train_tar, --validation_tar,
# --devkit, --bbox_tar) or the unpacked tree (--train_directory, --validation_directory, ...).
KEEP_BOTH, KEEP_ARCHIVES, KEEP_EXTRACTED = "both", "archives", "extracted"
KEEP_CHOICES = (KEEP_BOTH, KEEP_ARCHIVES, KEEP_EXTRACTED)
BUILDER_FLAGS = {"train": "--train_tar", "val": "--validation_tar", "devkit": "--devkit", "bbox": "--bbox_tar"}


@dataclass(frozen=True)
class DownloadConfig:
    target_dir: Path
    archives: tuple[Archive, ...]
    base_url: str
    from_dir: Path | None = None  # import tarballs from here instead of downloading
    keep: str = KEEP_BOTH
    flat_validation: bool = False
    validation_labels_file: Path = Path()

    def __post_init__(self) -> None:
        if self.keep == KEEP_EXTRACTED and self.from_dir is not None:
            raise UserError(f"--keep extracted deletes the archives once unpacked, and those in --from_dir "
                            f"{self.from_dir} are yours: use --keep both (they are not copied) or --keep archives")

    @property
    def extract(self) -> bool:
        return self.keep != KEEP_ARCHIVES

    def marker_options(self, archive: Archive) -> dict:
        """What a finished unpack of `archive` depended on, besides its bytes."""
        return {"flat_validation": self.flat_validation} if archive.key == "val" else {}


@dataclass(frozen=True)
class ArchiveTask:
    """What one archive still needs; all False means nothing to do."""

    archive: Archive
    source: Path  # the tarball, there already or to be downloaded
    fetch: bool  # download it (resuming `resume_from` bytes of .part)
    verify: bool  # it is there but not yet checked against its MD5
    unpack: bool
    resume_from: int = 0
    size: int | None = None  # the archive's bytes: published, on disk, or as the server says

    @property
    def pending(self) -> bool:
        return self.fetch or self.verify or self.unpack

    @property
    def size_unknown(self) -> bool:
        """A download whose length neither the table nor the server gives."""
        return self.fetch and self.size is None

    def describe(self) -> str:
        steps = []
        if self.fetch:
            resume = f" (resuming after {self.resume_from / GIB:.2f} GiB)" if self.resume_from else ""
            steps.append(f"download{resume}")
        if self.verify:
            steps.append(f"check MD5 of {self.source}")
        if self.unpack:
            steps.append("unpack")
        return f"{self.archive.name} ({size_text(self.size)}): {', '.join(steps) or 'done already'}"


def _what_to_do(config: DownloadConfig, archive: Archive) -> str:
    """The end of the line saying a file on disk is not `archive`."""
    if config.from_dir:
        return (f"put the real {archive.name} in {config.from_dir}, leave '{archive.key}' out of --files, "
                "or pass the right --checksums")
    return "delete it (a re-run downloads it again) or replace it with a good copy, or pass the right --checksums"


def _not_the_archive(config: DownloadConfig, archive: Archive, path: Path, found: str) -> UserError:
    """One line: `path` is not `archive` (`found`: what it is instead, against what was expected), and what to do."""
    builtin = archive.md5 == BUILTIN_ARCHIVES[archive.key].md5
    listed = "the ILSVRC-2012 archive" if builtin else "the file --checksums lists"
    return UserError(f"{path}: not {listed} ({found}); {_what_to_do(config, archive)}")


def _check_size(config: DownloadConfig, archive: Archive, path: Path) -> int:
    """The bytes of `path`, refused at once when the archive's published size says it is another file."""
    size = path.stat().st_size
    if archive.size is not None and size != archive.size:
        raise _not_the_archive(config, archive, path,
                               f"{size:,} bytes, expected {archive.size:,} with MD5 {archive.md5}")
    return size


def plan_archives(config: DownloadConfig) -> list[ArchiveTask]:
    """Decide from the files and markers on disk what each archive needs; touches nothing."""
    tasks = []
    for archive in config.archives:
        marker = state.unpack_record(config.target_dir, archive)
        expected_marker = {"md5": archive.md5, "options": config.marker_options(archive)}
        if config.extract and marker:
            if marker != expected_marker:
                options = ", ".join(f"{k}={v}" for k, v in marker.get("options", {}).items()) or "none"
                raise UserError(
                    f"{config.target_dir / OUTPUTS[archive.key]}: unpacked by an earlier run from another "
                    f"{archive.name} or with other options (then: {options}); remove it and "
                    f"{state.unpack_marker(config.target_dir, archive)} to unpack again")
            tasks.append(ArchiveTask(archive, config.target_dir / archive.name, False, False, False))
            continue
        source = (config.from_dir or config.target_dir) / archive.name
        if config.from_dir and not source.is_file():
            raise UserError(f"{source}: not found; put {archive.name} in {config.from_dir} or leave "
                            f"'{archive.key}' out of --files")
        present = source.is_file()
        part = source.with_name(source.name + ".part")
        resume_from = part.stat().st_size if not present and part.is_file() else 0
        size = _check_size(config, archive, source) if present else archive.size
        verified = present and state.is_verified(config.target_dir, archive, source)
        tasks.append(ArchiveTask(archive, source, not present, present and not verified, config.extract,
                                 resume_from, size))
    return tasks


def with_remote_sizes(tasks: list[ArchiveTask], source: ArchiveSource) -> list[ArchiveTask]:
    """The plan with the server's length of each download whose size is not published."""
    return [replace(task, size=remote_size(source, task.archive)) if task.fetch and task.size is None else task
            for task in tasks]


def space_needed(tasks: list[ArchiveTask], keep: str) -> int:
    """The most bytes the plan adds to the disk at any moment: the downloads, then each unpack (about the
    archive's size); with --keep extracted an archive in the target is deleted once it is unpacked.
    A size not known counts as 0, so with `size_unknown` tasks this is a lower bound."""
    added = sum(max((task.size or 0) - task.resume_from, 0) for task in tasks if task.fetch)
    peak = added
    for task in tasks:
        if task.unpack:
            added += task.size or 0
            peak = max(peak, added)
            if keep == KEEP_EXTRACTED:
                added -= task.size or 0
    return peak


def _archives_only(tasks: list[ArchiveTask]) -> int:
    return space_needed([replace(task, unpack=False) for task in tasks], KEEP_ARCHIVES)


def _amount(needed: int, tasks: list[ArchiveTask], none_known: str = "unknown") -> str:
    """`needed` in words, 'at least' it when some download's size is not known, `none_known` when no size
    counted is."""
    if not any(task.size_unknown for task in tasks):
        return size_text(needed)
    return f"at least {size_text(needed)}" if needed else none_known


def space_lines(config: DownloadConfig, tasks: list[ArchiveTask]) -> list[str]:
    """The plan's lines about disk space: what it needs against what is free, and what --keep would save."""
    needed, free = space_needed(tasks, config.keep), free_bytes(config.target_dir)
    unknown = ", ".join(task.archive.name for task in tasks if task.size_unknown)
    why = f" (the server gives no size for {unknown})" if unknown else ""
    lines = [f"space needed: {_amount(needed, tasks)}{why}, {size_text(free)} free in {config.target_dir}"]
    if config.keep == KEEP_BOTH and any(task.unpack for task in tasks):
        archives_only = _amount(_archives_only(tasks), tasks, "about half")
        lines.append(f"  to save space: --keep archives needs only {archives_only} (nothing "
                     "unpacked: the builder reads the tars in place with --train_tar, --validation_tar, --devkit, "
                     "--bbox_tar); --keep extracted deletes each archive once it is unpacked")
    return lines


def ensure_plan_fits(config: DownloadConfig, tasks: list[ArchiveTask]) -> None:
    """A UserError when the plan needs more than the free space, naming --keep archives when that would fit;
    sizes not known yet count as 0 (the check is made again once the server has given them)."""
    archives_only, at_least = _archives_only(tasks), any(task.size_unknown for task in tasks)
    instead = f", or pass --keep archives (needs {'at least ' if at_least else ''}{size_text(archives_only)})" \
        if config.keep != KEEP_ARCHIVES and archives_only <= free_bytes(config.target_dir) else ""
    ensure_free_space(config.target_dir, space_needed(tasks, config.keep), "carry out this plan", instead, at_least)


def builder_command(tasks: list[ArchiveTask], build_command: Sequence[str]) -> str:
    """The build command that reads the kept archives in place, runnable from any folder (`build_command` and
    every path absolute, quoted for the shell) once `<out>` is replaced by the output folder."""
    flags = [word for task in tasks for word in (BUILDER_FLAGS[task.archive.key], str(Path(task.source).resolve()))]
    return f"{shlex.join([*build_command, *flags])} --output_directory <out>"


def _validation_labels(path: Path) -> tuple[str, ...]:
    """The validation labels, each checked to be a wnid: it becomes a folder name under validation/."""
    labels = tuple(load_validation_labels(path))
    for number, label in enumerate(labels, 1):
        if not WNID.fullmatch(label):
            raise UserError(f"{path}:{number}: expected a wnid such as n01440764, got {label!r}; "
                            "pass the right --validation_labels_file")
    return labels


def _unpack_options(config: DownloadConfig, tasks: list[ArchiveTask]) -> UnpackOptions:
    """Read the label files the unpacks need now, so a wrong path fails before hours of download."""
    keys = {task.archive.key for task in tasks if task.unpack}
    needs_labels = "val" in keys and not config.flat_validation
    return UnpackOptions(
        flat_validation=config.flat_validation,
        validation_labels=_validation_labels(config.validation_labels_file) if needs_labels else (),
        validation_labels_file=config.validation_labels_file,
        synsets=frozenset(load_wnids(DEFAULT_LABELS_FILE)) if "bbox" in keys else frozenset(),
    )


def _verify(config: DownloadConfig, task: ArchiveTask) -> None:
    archive, source = task.archive, task.source
    with open(source, "rb") as handle:
        if looks_like_html(handle.read(512)):
            raise UserError(f"{source}: an HTML page saved under the name {archive.name}, not the archive; "
                            "delete it and run again")
    actual = md5_of_file(source).hexdigest()
    if actual != archive.md5:
        raise _not_the_archive(config, archive, source, f"MD5 is {actual}, expected {archive.md5}")
    log.info("%s: MD5 ok", source)


@contextmanager
def _target_folder(target: Path) -> Iterator[None]:
    """Make `target` and its missing parents; when the block fails, remove those of them still empty (a
    folder that was there before, or holds anything, stays)."""
    made = []
    folder = target
    while not folder.exists() and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    make_directory(target, "the target directory", "; pick another --target_dir")
    try:
        yield
    except BaseException:
        for folder in made:  # innermost first
            try:
                folder.rmdir()
            except OSError:  # not empty, or gone already
                break
        raise


def run(config: DownloadConfig, tasks: list[ArchiveTask], source: ArchiveSource | None) -> None:
    """Fetch (from `source`) or check every archive of the plan, then unpack each once; with --keep extracted
    delete each archive once it is unpacked."""
    with _target_folder(config.target_dir):
        _run_tasks(config, tasks, source)


def _run_tasks(config: DownloadConfig, tasks: list[ArchiveTask], source: ArchiveSource | None) -> None:
    target = config.target_dir
    ensure_plan_fits(config, tasks)
    options = _unpack_options(config, tasks)
    for task in tasks:
        if task.fetch:
            download(source, task.archive, task.source)
        elif task.verify:
            _verify(config, task)
        if task.fetch or task.verify:
            state.record_verified(target, task.archive, task.source)
    for task in tasks:
        if not task.pending:
            log.info("%s: unpacked already", task.archive.name)
        if task.unpack:
            ensure_free_space(target, unpacked_size(task.source), f"unpack {task.archive.name}")
            unpack(task.archive, task.source, target, options)
            state.record_unpacked(target, task.archive, config.marker_options(task.archive))
            if config.keep == KEEP_EXTRACTED:
                task.source.unlink()
                log.info("%s: unpacked, so deleted (--keep extracted)", task.source)
