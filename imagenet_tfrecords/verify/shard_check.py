"""The worker of `--verify`: read one shard once and check everything that needs only this shard.

Framing and both masked CRC-32Cs, SHA-256, every record (`record_check`), labels, and the
shard's DALI index. An ArrayRecord shard (`.array_record`) is read record by record with random
access through its own index, each chunk's hash checked by its reader; it has no DALI index. A pure
function of a `ShardJob`; no TensorFlow.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..images.acceptance import DEFAULT_MAX_PIXELS
from ..output.array_record import ARRAY_RECORD, file_digest, open_reader
from ..output.dali_index import FramingError, iter_records, open_shard, parse_index
from ..plan.shards import shard_file_format
from ..storage.folders import Bucket
from ..storage.urls import is_url
from .record_check import image_problem, parse_record

MAX_PROBLEMS_PER_SHARD = 20  # a damaged shard is named; its first problems are enough to act on


@dataclass(frozen=True)
class Problem:
    """What is wrong, and where: a file, or one record of a shard (`offset`)."""

    file: str
    offset: int | None
    message: str
    image: str | None = None  # the record's image/filename, when the record has one
    unit: str = "offset"  # what `offset` counts: bytes ("offset"), or records of an ArrayRecord shard ("record")

    def line(self) -> str:
        return f"{self.file}{where_in_shard(self.offset, self.image, ': ', self.unit)}: {self.message}"


def where_in_shard(offset: int | None, image: str | None, lead: str, unit: str = "offset") -> str:
    """`offset N (image)` (or `record N`) after `lead`, or nothing for a problem of the whole shard."""
    if offset is None:
        return ""
    return f"{lead}{unit} {offset}" + (f" ({image})" if image else "")


@dataclass(frozen=True)
class ShardJob:
    """One shard to check; the worker is a pure function of this."""

    path: str
    index_file: str | None  # its DALI index; None: indexes are not checked
    deep: bool
    label_range: tuple[int, int] | None  # [low, high); None: labels only need to be >= 0
    max_pixels: int = DEFAULT_MAX_PIXELS  # --deep: the build's pixel limit


@dataclass
class ShardReport:
    """What the worker found in one shard."""

    name: str
    split: str
    size: int
    records: int = 0
    framing_ok: bool = True
    sha256: str | None = None  # None when the framing is broken
    labels: dict[int, int] = field(default_factory=dict)  # label -> records
    # (label, synset, text) -> the first record with it: (offset, image filename)
    classes: dict[tuple[int, str, str], tuple[int, str | None]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    problems_left_out: int = 0
    unit: str = "offset"  # how a record is placed: its byte offset, or its number in an ArrayRecord shard ("record")

    def add(self, offset: int | None, message: str, image: str | None = None) -> None:
        if len(self.problems) < MAX_PROBLEMS_PER_SHARD:
            self.problems.append(Problem(self.name, offset, message, image, self.unit))
        else:
            self.problems_left_out += 1


def shard_name(job: ShardJob) -> str:
    return job.path.rstrip("/").rsplit("/", 1)[-1]


def _label_problem(label: int, label_range: tuple[int, int] | None) -> str | None:
    if label_range is None:
        return f"label {label} is negative" if label < 0 else None
    low, high = label_range
    return None if low <= label < high else f"label {label} is outside {low}..{high - 1}"


def _check_record(offset: int, payload: bytes, job: ShardJob, report: ShardReport) -> None:
    parsed, filename, problems = parse_record(payload)
    if parsed is not None:
        report.labels[parsed.label] = report.labels.get(parsed.label, 0) + 1
        report.classes.setdefault((parsed.label, parsed.synset, parsed.text), (offset, filename))
        problems += [p for p in (_label_problem(parsed.label, job.label_range),
                                 image_problem(parsed, job.max_pixels) if job.deep else None) if p]
    for problem in problems:
        report.add(offset, problem, filename)


def _read_text(location: str) -> str:
    """A local file's text, or an object's; FileNotFoundError when it is not there."""
    if is_url(location):
        directory, _, name = location.rpartition("/")
        return Bucket(directory).read(name).decode()
    return Path(location).read_text()


def _index_problem(index_file: str, entries: list[tuple[int, int]]) -> str | None:
    """Whether the DALI index lists exactly the records the shard's framing gives."""
    try:
        listed = parse_index(_read_text(index_file))
    except FileNotFoundError:
        return f"no DALI index {index_file}"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"DALI index {index_file} is unreadable ({exc})"
    if listed == entries:
        return None
    line = next((i for i, (a, b) in enumerate(zip(listed, entries)) if a != b), min(len(listed), len(entries)))
    says = "{} {}".format(*listed[line]) if line < len(listed) else "nothing"
    has = "{} {}".format(*entries[line]) if line < len(entries) else "nothing"
    return f"DALI index {index_file} line {line + 1} says {says!r}, the shard's framing gives {has!r}"


def check_shard(job: ShardJob) -> ShardReport:
    """Read one shard once and check everything that needs only this shard."""
    name = shard_name(job)
    if shard_file_format(name) == ARRAY_RECORD:
        return _check_array_record(job, name)
    try:
        handle, size = open_shard(job.path)
    except OSError as exc:
        report = ShardReport(name, name.split("-", 1)[0], 0, framing_ok=False)
        report.add(None, f"cannot be read ({exc.strerror})")
        return report
    report = ShardReport(name, name.split("-", 1)[0], size)
    checksum = hashlib.sha256()
    entries: list[tuple[int, int]] = []
    with handle:
        try:
            for record in iter_records(handle, size):
                checksum.update(record.header)
                checksum.update(record.payload)
                checksum.update(record.footer)
                entries.append((record.offset, record.size))
                _check_record(record.offset, record.payload, job, report)
        except FramingError as exc:
            report.framing_ok = False
            report.add(exc.offset, exc.reason)
    report.records = len(entries)
    if report.framing_ok:
        report.sha256 = checksum.hexdigest()
        problem = _index_problem(job.index_file, entries) if job.index_file else None
        if problem:
            report.add(None, problem)
    if not entries and report.framing_ok:
        report.add(None, "holds no records")
    return report


def _check_array_record(job: ShardJob, name: str) -> ShardReport:
    """An ArrayRecord shard: SHA-256 of the file, then every record by its number (random access), each
    through `record_check`. A shard in a bucket is first copied to a local temporary."""
    split = name.split("-", 1)[0]
    with tempfile.TemporaryDirectory(prefix="imagenet-tfrecords-verify-") as spool:
        try:
            if is_url(job.path):
                local = Path(spool) / name
                handle, size = open_shard(job.path)
                with handle, open(local, "wb") as copy:
                    shutil.copyfileobj(handle, copy, 8 << 20)
            else:
                local = Path(job.path)
            size, sha256 = file_digest(local)
        except OSError as exc:
            report = ShardReport(name, split, 0, framing_ok=False, unit="record")
            report.add(None, f"cannot be read ({exc.strerror or exc})")
            return report
        report = ShardReport(name, split, size, unit="record")
        try:
            reader = open_reader(local)
        except (OSError, ValueError) as exc:
            report.framing_ok = False
            report.add(None, f"not a readable ArrayRecord file ({exc})")
            return report
        try:
            count = reader.num_records()
            for number in range(count):
                try:
                    (payload,) = reader.read([number])
                except (RuntimeError, ValueError) as exc:  # a chunk whose hash does not match, a cut file
                    report.framing_ok = False
                    report.add(number, f"unreadable record ({exc})")
                    break
                _check_record(number, payload, job, report)
        finally:
            reader.close()
    report.records = count
    if report.framing_ok:
        report.sha256 = sha256
        if not count:
            report.add(None, "holds no records")
    return report
