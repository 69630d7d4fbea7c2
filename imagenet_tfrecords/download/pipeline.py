"""Plan what each archive still needs (data), then do it: fetch or import, verify, unpack, mark done."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..labels import DEFAULT_LABELS_FILE, load_validation_labels, load_wnids
from . import state
from .archives import Archive, looks_like_html
from .checksums import md5_of_file
from .credentials import Credentials
from .fetch import download
from .space import GIB, ensure_free_space
from .unpack import OUTPUTS, UnpackOptions, unpack, unpacked_size

log = logging.getLogger(__name__)

WNID = re.compile(r"n\d{8}")


@dataclass(frozen=True)
class DownloadConfig:
    target_dir: Path
    archives: tuple[Archive, ...]
    base_url: str
    from_dir: Path | None = None  # import tarballs from here instead of downloading
    extract: bool = True
    flat_validation: bool = False
    validation_labels_file: Path = Path()

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

    @property
    def pending(self) -> bool:
        return self.fetch or self.verify or self.unpack

    def describe(self) -> str:
        steps = []
        if self.fetch:
            resume = f" (resuming after {self.resume_from / GIB:.2f} GiB)" if self.resume_from else ""
            steps.append(f"download{resume}")
        if self.verify:
            steps.append(f"check MD5 of {self.source}")
        if self.unpack:
            steps.append("unpack")
        return f"{self.archive.name}: {', '.join(steps) or 'done already'}"


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
        verified = present and state.is_verified(config.target_dir, archive, source)
        tasks.append(ArchiveTask(archive, source, not present, present and not verified, config.extract, resume_from))
    return tasks


def space_needed(tasks: list[ArchiveTask]) -> int:
    """Bytes the whole plan will write, as far as sizes are known before starting."""
    needed = 0
    for task in tasks:
        size = task.archive.size or (task.source.stat().st_size if task.source.is_file() else 0)
        if task.fetch and task.archive.size:
            needed += max(task.archive.size - task.resume_from, 0)
        if task.unpack and task.archive.key in ("train", "val"):
            needed += size
    return needed


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


def _verify(task: ArchiveTask) -> None:
    archive, source = task.archive, task.source
    with open(source, "rb") as handle:
        if looks_like_html(handle.read(512)):
            raise UserError(f"{source}: an HTML page saved under the name {archive.name}, not the archive; "
                            "delete it and run again")
    actual = md5_of_file(source).hexdigest()
    if actual != archive.md5:
        raise UserError(f"{source}: MD5 is {actual}, expected {archive.md5}; delete it (a re-run downloads it "
                        "again) or replace it with a good copy, or pass the right --checksums")
    log.info("%s: MD5 ok", source)


def run(config: DownloadConfig, tasks: list[ArchiveTask], credentials: Credentials | None) -> None:
    """Fetch or check every archive of the plan, then unpack each once."""
    target = config.target_dir
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{target}: cannot create the target directory ({exc.strerror}); pick another --target_dir") from None
    ensure_free_space(target, space_needed(tasks), "download and unpack these archives")
    options = _unpack_options(config, tasks)
    for task in tasks:
        if task.fetch:
            download(config.base_url, task.archive, task.source, credentials)
        elif task.verify:
            _verify(task)
        if task.fetch or task.verify:
            state.record_verified(target, task.archive, task.source)
    for task in tasks:
        if not task.pending:
            log.info("%s: unpacked already", task.archive.name)
        if task.unpack:
            ensure_free_space(target, unpacked_size(task.source), f"unpack {task.archive.name}")
            unpack(task.archive, task.source, target, options)
            state.record_unpacked(target, task.archive, config.marker_options(task.archive))
