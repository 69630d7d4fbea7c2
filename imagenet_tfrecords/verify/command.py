"""`--verify OUT`: prove a build is complete and correct, shard by shard, in parallel.

Workers (no TensorFlow) read each shard once: framing and both masked CRC-32Cs, SHA-256,
the Inception schema of every record, labels, optionally every image (`deep`), and the
shard's DALI index. The parent then checks names, counts, sizes and checksums against
`manifest.json` and the known ImageNet totals, label consistency across shards, the label
histogram and the class mix of train shards.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections import Counter, defaultdict
from collections.abc import Container
from dataclasses import asdict, dataclass, field
from pathlib import Path

from google.protobuf.message import DecodeError
from tqdm import tqdm

from ..images.acceptance import DEFAULT_MAX_PIXELS, stored_jpeg_problem
from ..storage.atomic import final_name
from ..output.dali_index import FramingError, iter_records, open_shard, parse_index
from ..errors import UserError, run_command
from ..images.formats import read_jpeg_header, sniff_format
from ..engines.pool import available_cpus, map_unordered
from ..output.manifest import (BAD_IMAGES_REPORT, DATASET_INFO_NAME, JOURNAL_NAME, LOCK_NAME, MANIFEST_NAME, SHARD_NAME,
                       read_manifest)
from ..proto.imgrec_example_pb2 import Example
from ..output.shard import BUCKET_JOURNAL
from ..storage.folders import Bucket, folder
from ..storage.urls import is_url, join
from ..inputs.tars import INDEX_DIR

log = logging.getLogger(__name__)

VERIFY_INTERRUPTED = "interrupted; the check did not finish (it changes nothing): run it again"
IMAGENET_TOTALS = {"train": 1_281_167, "validation": 50_000}  # devkit readme (facts §1.2)
IMAGENET_PER_CLASS = {"train": (732, 1300), "validation": (50, 50)}  # images per synset, devkit readme
IMAGENET_CLASSES = 1000
SHUFFLE_CHECKED_SPLITS = ("train",)
MAX_PROBLEMS_PER_SHARD = 20  # a damaged shard is named; its first problems are enough to act on
# What a build writes besides shards, indexes and temporaries: in its output directory, in its index directory.
OUTPUT_FILES = (MANIFEST_NAME, JOURNAL_NAME, BAD_IMAGES_REPORT, DATASET_INFO_NAME, INDEX_DIR, LOCK_NAME)
INDEX_DIRECTORY_FILES = (LOCK_NAME,)
SPLIT_PREFIXES = ("train-", "validation-")
NO_MANIFEST_HELP = ("the shards were made by another tool: a missing manifest.json is not a problem "
                    "(counts, sizes and checksums are then not compared with a build's record)")

_JPEG_MODES = {1: "L", 4: "CMYK"}  # a JPEG's components, named as Pillow names the modes
BOX_KEYS = tuple(f"image/object/bbox/{axis}" for axis in ("xmin", "ymin", "xmax", "ymax"))
SCHEMA = {  # facts §6.1: every key, always present, with its list kind
    "image/height": "int64_list", "image/width": "int64_list", "image/colorspace": "bytes_list",
    "image/channels": "int64_list", "image/class/label": "int64_list", "image/class/synset": "bytes_list",
    "image/class/text": "bytes_list", "image/format": "bytes_list", "image/filename": "bytes_list",
    "image/encoded": "bytes_list", **{key: "float_list" for key in BOX_KEYS}, "image/object/bbox/label": "int64_list",
}
SINGLE_VALUED = tuple(key for key in SCHEMA if not key.startswith("image/object/"))
CONSTANTS = {"image/colorspace": b"RGB", "image/channels": 3, "image/format": b"JPEG"}


@dataclass(frozen=True)
class Problem:
    file: str
    offset: int | None
    message: str
    image: str | None = None  # the record's image/filename, when the record has one

    def line(self) -> str:
        return f"{self.file}{_where_in_shard(self.offset, self.image, ': ')}: {self.message}"


def _where_in_shard(offset: int | None, image: str | None, lead: str) -> str:
    """`offset N (image)` after `lead`, or nothing for a problem of the whole shard."""
    if offset is None:
        return ""
    return f"{lead}offset {offset}" + (f" ({image})" if image else "")


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

    def add(self, offset: int | None, message: str, image: str | None = None) -> None:
        if len(self.problems) < MAX_PROBLEMS_PER_SHARD:
            self.problems.append(Problem(self.name, offset, message, image))
        else:
            self.problems_left_out += 1


@dataclass(frozen=True)
class Parsed:
    label: int
    synset: str
    text: str
    height: int
    width: int
    encoded: bytes


# ---- worker: one shard ----------------------------------------------------------------------

Fields = dict[str, tuple[str | None, list]]  # key -> (list kind, values)


def _fields(example: Example) -> Fields:
    """Each feature's kind and values, read once (map lookups in protobuf are the slow part)."""
    fields = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        fields[key] = (kind, list(getattr(feature, kind).value) if kind else [])
    return fields


def _schema_problems(fields: Fields) -> list[str]:
    kinds = {key: kind for key, (kind, _) in fields.items()}
    if kinds == SCHEMA and all(len(fields[key][1]) == 1 for key in SINGLE_VALUED):
        return [f"{key} is {fields[key][1][0]!r}, expected {value!r}"
                for key, value in CONSTANTS.items() if fields[key][1] != [value]]
    if kinds.keys() != SCHEMA.keys():
        missing, extra = sorted(SCHEMA.keys() - kinds.keys()), sorted(kinds.keys() - SCHEMA.keys())
        return [f"schema: missing keys {missing}, unexpected keys {extra}"]
    wrong_kind = [f"schema: {key} is a {kinds[key]}, expected {kind}"
                  for key, kind in SCHEMA.items() if kinds[key] != kind]
    return wrong_kind or [f"schema: {key} holds {len(fields[key][1])} values, expected 1"
                          for key in SINGLE_VALUED if len(fields[key][1]) != 1]


def _box_problems(fields: Fields, label: int) -> list[str]:
    xmin, ymin, xmax, ymax = (fields[key][1] for key in BOX_KEYS)
    box_labels = fields["image/object/bbox/label"][1]
    if not len(xmin) == len(ymin) == len(xmax) == len(ymax) == len(box_labels):
        return ["bounding box lists differ in length"]
    problems = [f"bounding box label {value} differs from the image label {label}"
                for value in set(box_labels) - {label}]
    for box in zip(xmin, ymin, xmax, ymax):
        if not (0.0 <= box[0] <= box[2] <= 1.0 and 0.0 <= box[1] <= box[3] <= 1.0):
            problems.append(f"bounding box {box} is not inside [0, 1] with min <= max")
    return problems


def _filename(fields: Fields) -> str | None:
    """The record's image/filename, if it holds one string, for naming the image in problems."""
    kind, values = fields.get("image/filename", (None, []))
    return values[0].decode("utf-8", "backslashreplace") if kind == "bytes_list" and len(values) == 1 else None


def parse_record(payload: bytes) -> tuple[Parsed | None, str | None, list[str]]:
    """The fields verify needs from one record and its image filename, or why it breaks the Inception schema."""
    try:
        fields = _fields(Example.FromString(payload))
    except DecodeError:
        return None, None, ["does not parse as a tf.train.Example"]
    filename = _filename(fields)
    problems = _schema_problems(fields)
    if problems:
        return None, filename, problems
    one = {key: fields[key][1][0] for key in SINGLE_VALUED}
    parsed = Parsed(one["image/class/label"], one["image/class/synset"].decode(errors="replace"),
                    one["image/class/text"].decode(errors="replace"), one["image/height"], one["image/width"],
                    one["image/encoded"])
    if parsed.height < 1 or parsed.width < 1:
        problems.append(f"image/height x image/width is {parsed.height}x{parsed.width}")
    return parsed, filename, problems + _box_problems(fields, parsed.label)


def image_problem(parsed: Parsed, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """`--deep`: a 3-channel JPEG of the stored size that the build would store (acceptance)."""
    kind = sniff_format(parsed.encoded)
    header = read_jpeg_header(parsed.encoded) if kind == "JPEG" else None
    if kind != "JPEG":
        return f"image is {kind or 'not an image file'}, but image/format says JPEG"
    if header is None:
        return "image does not decode (JPEG without a frame header)"
    if header.components != 3:
        return f"image is {_JPEG_MODES.get(header.components, header.components)}, not 3-channel RGB"
    if (header.width, header.height) != (parsed.width, parsed.height):
        return f"image is {header.width}x{header.height} (WxH), the record says {parsed.width}x{parsed.height}"
    problem = stored_jpeg_problem(parsed.encoded, header, max_pixels)
    return f"image is bad: {problem}" if problem else None


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
    name = _shard_name(job)
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


# ---- parent: the whole directory -------------------------------------------------------------

@dataclass
class SplitStats:
    shards: int = 0
    records: int = 0
    expected_records: int | None = None  # from manifest.json (images planned less bad images)
    classes: int = 0
    per_class_min: int = 0
    per_class_max: int = 0
    min_classes_per_shard: int = 0
    label_histogram: dict[int, int] = field(default_factory=dict)


@dataclass
class VerifyReport:
    directory: str
    index_directory: str | None
    deep: bool
    shards: list[ShardReport] = field(default_factory=list)
    splits: dict[str, SplitStats] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, file: str, message: str) -> None:
        self.problems.append(Problem(file, None, message))


def _load_manifest(directory: Path | str, present: Container[str], report: VerifyReport) -> dict | None:
    if MANIFEST_NAME not in present:
        report.notes.append(f"no {MANIFEST_NAME}: counts, sizes and checksums not compared with the build's record")
        return None
    try:
        return read_manifest(directory)  # with the shards of a journal not yet folded in
    except (OSError, ValueError) as exc:
        report.problem(MANIFEST_NAME, f"unreadable ({exc})")
        return None


def _label_range(manifest: dict | None) -> tuple[int, int] | None:
    if not manifest or not manifest.get("splits"):
        return None
    offset = manifest["options"]["label_offset"]
    return offset, offset + max(split["classes_total"] for split in manifest["splits"].values())


def _is_folder(location: Path | str) -> bool:
    """A local directory, or a folder of a bucket that holds anything."""
    if not is_url(location):
        return Path(location).is_dir()
    bucket = Bucket(location)
    return bool(bucket.sizes() or bucket.folders())  # the folders are listed only when it holds no object


def _resolve_index_dir(directory: Path | str, index_dir: Path | str | None, manifest: dict | None,
                       report: VerifyReport) -> Path | str | None:
    """The index directory asked for, else the one the build recorded, else DIR/idx if present."""
    if index_dir is None and manifest is not None and "index_directory" in manifest:
        if manifest["index_directory"] is None:
            report.notes.append("the build wrote no DALI indexes (--no_index): none checked")
            return None
        recorded = manifest["index_directory"]  # relative, or absolute as recorded
        index_dir = recorded if is_url(recorded) or Path(recorded).is_absolute() else join(directory, recorded)
    if index_dir is not None:
        if _is_folder(index_dir):
            return index_dir
        report.problem(str(index_dir), "index directory not found")
        return None
    if _is_folder(join(directory, "idx")):
        return join(directory, "idx")
    report.notes.append(f"no index directory ({join(directory, 'idx')}): DALI indexes not checked")
    return None


def _require_manifest(directory: Path | str, present: Container[str], no_manifest: bool, report: VerifyReport) -> None:
    """A build always writes manifest.json; without it, only shards made by another tool verify."""
    if not no_manifest and MANIFEST_NAME not in present:
        report.problem(str(join(directory, MANIFEST_NAME)),
                       "missing, so the shards cannot be checked against the build's record; "
                       "rebuild, or pass --no_manifest if another tool made these shards")


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


def _stray_files(directory: Path | str, index_dir: Path | str | None, shard_names: set[str],
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
    """`_stray_files` in a bucket: objects and folders (common prefixes) by name."""
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


def _check_names(names: list[str], manifest: dict | None, report: VerifyReport) -> None:
    """Shard names contiguous 00000..N-1 of N per split, as planned; none missing, none extra."""
    totals: dict[str, set[int]] = defaultdict(set)
    for name in names:
        split, _, _, total = name.split("-")
        totals[split].add(int(total))
    for split, seen in sorted(totals.items()):
        if len(seen) > 1:
            report.problem(split, f"shards disagree on the shard count: -of-{sorted(seen)}")
    planned = {split: {info["shards"]} for split, info in (manifest or {}).get("splits", {}).items()}
    expected = {f"{split}-{i:05d}-of-{n:05d}" for split, counts in (planned or totals).items()
                for n in counts for i in range(n)}
    for name in sorted(expected - set(names)):
        report.problem(name, "missing")
    for name in sorted(set(names) - expected):
        report.problem(name, f"not part of the build recorded in {MANIFEST_NAME}")


def _check_against_manifest(shards: list[ShardReport], manifest: dict, report: VerifyReport) -> None:
    recorded = manifest.get("shards", {})
    for shard in shards:
        entry = recorded.get(shard.name)
        if entry is None:
            report.problem(shard.name, f"not recorded in {MANIFEST_NAME} (unfinished, or written by another build)")
            continue
        if shard.size != entry["size"]:
            report.problem(shard.name, f"size {shard.size} bytes, {MANIFEST_NAME} says {entry['size']}")
        elif shard.sha256 is not None and shard.sha256 != entry["sha256"]:
            report.problem(shard.name, f"SHA-256 differs from {MANIFEST_NAME}")
        if shard.framing_ok and shard.records != entry["records"]:
            report.problem(shard.name, f"{shard.records} records, {MANIFEST_NAME} says {entry['records']}")


def _expected_distinct(histogram: dict[int, int], draws: int) -> float:
    """Distinct classes expected among `draws` records drawn at random from a split's histogram."""
    total = sum(histogram.values())
    return sum(1 - (1 - count / total) ** draws for count in histogram.values())


def _check_shuffle(split: str, shards: list[ShardReport], histogram: dict[int, int], report: VerifyReport) -> None:
    """A shuffled shard mixes classes; flag shards with under half the classes a random draw gives."""
    if split not in SHUFFLE_CHECKED_SPLITS or len(histogram) < 2:
        return
    for shard in shards:
        expected = _expected_distinct(histogram, shard.records)
        if shard.records and len(shard.labels) < expected / 2:
            report.problem(shard.name, f"holds {len(shard.labels)} classes in {shard.records} records, a shuffled "
                                       f"shard about {expected:.0f}: the split looks class-sorted, not shuffled")


def _check_split_counts(split: str, stats: SplitStats, manifest: dict | None, report: VerifyReport) -> None:
    if stats.records == 0:
        report.problem(split, "no records")
    planned = (manifest or {}).get("splits", {}).get(split)
    if planned is None:
        return
    bad = sum(len(entry["bad_images"]) for entry in manifest.get("shards", {}).values() if entry["split"] == split)
    stats.expected_records = planned["images"] - bad
    if stats.records != stats.expected_records:
        report.problem(split, f"{stats.records} records, {MANIFEST_NAME} expects {stats.expected_records} "
                              f"({planned['images']} images planned, {bad} bad left out)")
    if stats.classes != planned["classes_present"]:
        report.problem(split, f"{stats.classes} classes in the records, {planned['classes_present']} in the input")
    if planned["images"] == IMAGENET_TOTALS.get(split) and planned["classes_total"] == IMAGENET_CLASSES:
        _check_full_imagenet(split, stats, report)


def _check_full_imagenet(split: str, stats: SplitStats, report: VerifyReport) -> None:
    low, high = IMAGENET_PER_CLASS[split]
    if stats.records != IMAGENET_TOTALS[split]:
        report.problem(split, f"{stats.records} records; full ImageNet {split} has {IMAGENET_TOTALS[split]}")
    if stats.classes != IMAGENET_CLASSES or not low <= stats.per_class_min <= stats.per_class_max <= high:
        report.problem(split, f"{stats.classes} classes with {stats.per_class_min}..{stats.per_class_max} records "
                              f"each; full ImageNet {split} has {IMAGENET_CLASSES} with {low}..{high}")


def _split_stats(shards: list[ShardReport]) -> SplitStats:
    histogram: Counter[int] = Counter()
    for shard in shards:
        histogram.update(shard.labels)
    return SplitStats(
        shards=len(shards), records=sum(s.records for s in shards), classes=len(histogram),
        per_class_min=min(histogram.values(), default=0), per_class_max=max(histogram.values(), default=0),
        min_classes_per_shard=min((len(s.labels) for s in shards), default=0),
        label_histogram=dict(sorted(histogram.items())),
    )


def _check_label_consistency(shards: list[ShardReport], report: VerifyReport) -> None:
    """One synset and text per label, one label per synset, across every shard."""
    first_seen: dict[tuple[int, str, str], str] = {}
    for shard in shards:
        for triple, (offset, image) in shard.classes.items():
            first_seen.setdefault(triple, shard.name + _where_in_shard(offset, image, " "))
    by_label: dict[int, list] = defaultdict(list)
    by_synset: dict[str, set[int]] = defaultdict(set)
    for label, synset, text in first_seen:
        by_label[label].append((synset, text))
        by_synset[synset].add(label)
    for label, pairs in sorted(by_label.items()):
        if len(pairs) > 1:
            seen = "; ".join(f"{s!r}/{t!r} first at {first_seen[(label, s, t)]}" for s, t in sorted(pairs))
            report.problem(f"label {label}", f"has {len(pairs)} synset/text pairs: {seen}")
    for synset, labels in sorted(by_synset.items()):
        if len(labels) > 1:
            report.problem(f"synset {synset}", f"has labels {sorted(labels)}")


def _shard_name(job: ShardJob) -> str:
    return job.path.rstrip("/").rsplit("/", 1)[-1]


def _check_shards(jobs: list[ShardJob], num_workers: int) -> list[ShardReport]:
    reports = []
    with tqdm(total=len(jobs), unit="shard", desc="verify", disable=not sys.stderr.isatty()) as bar:
        for shard in map_unordered(check_shard, jobs, min(num_workers, len(jobs)), describe=_shard_name):
            reports.append(shard)
            bar.update()
    return sorted(reports, key=lambda s: s.name)


def verify_directory(directory: Path, deep: bool = False, num_workers: int = 1,
                     index_dir: Path | None = None, no_manifest: bool = False,
                     max_pixels: int | None = None) -> VerifyReport:
    """Check every shard of a build directory; the report lists every problem found.

    `no_manifest`: the shards were made by another tool, so a missing manifest.json is no problem.
    """
    directory = directory if is_url(directory) else Path(directory)
    if not _is_folder(directory):
        what = "an empty or missing bucket folder" if is_url(directory) else "not a directory"
        raise UserError(f"{directory}: {what}; pass the output directory of a build")
    present = folder(directory).sizes()
    report = VerifyReport(str(directory), None, deep)
    manifest = _load_manifest(directory, present, report)
    _require_manifest(directory, present, no_manifest, report)
    resolved_index_dir = _resolve_index_dir(directory, index_dir, manifest, report)
    report.index_directory = str(resolved_index_dir) if resolved_index_dir else None
    names = sorted(name for name in present if SHARD_NAME.fullmatch(name))
    label_range = _label_range(manifest)
    jobs = [ShardJob(str(join(directory, name)), str(join(resolved_index_dir, f"{name}.idx")) if resolved_index_dir
                     else None, deep, label_range, max_pixels or _build_max_pixels(manifest)) for name in names]
    log.info("verifying %d shards in %s with %d workers", len(jobs), directory, min(num_workers, max(len(jobs), 1)))
    report.shards = _check_shards(jobs, num_workers)
    _collect(report, manifest, set(names))
    return report


def _build_max_pixels(manifest: dict | None) -> int:
    """The pixel limit the build used (manifest.json), so --deep accepts exactly what it stored."""
    try:
        return int(manifest["options"]["image"]["max_pixels"])
    except (TypeError, KeyError, ValueError):
        return DEFAULT_MAX_PIXELS


def _collect(report: VerifyReport, manifest: dict | None, names: set[str]) -> None:
    """The checks across shards, after every shard has been read."""
    if not report.shards:
        report.problem(report.directory, "no shards (train-00000-of-NNNNN, validation-...) found")
    for shard in report.shards:
        report.problems += shard.problems
        if shard.problems_left_out:
            report.problem(shard.name, f"... and {shard.problems_left_out} more problems in this shard")
    _stray_files(report.directory, report.index_directory, names, report)
    _check_names(sorted(names), manifest, report)
    if manifest is not None:
        _check_against_manifest(report.shards, manifest, report)
    by_split: dict[str, list[ShardReport]] = defaultdict(list)
    for shard in report.shards:
        by_split[shard.split].append(shard)
    for split in sorted(by_split.keys() | (manifest or {}).get("splits", {}).keys()):
        stats = report.splits[split] = _split_stats(by_split[split])
        _check_split_counts(split, stats, manifest, report)
        _check_shuffle(split, by_split[split], stats.label_histogram, report)
    _check_label_consistency(report.shards, report)


# ---- output ----------------------------------------------------------------------------------

def format_table(report: VerifyReport) -> str:
    lines = [f"verified {report.directory}: {len(report.shards)} shards"
             + (f", DALI indexes in {report.index_directory}" if report.index_directory else "")
             + (", every image decoded" if report.deep else ""),
             f"{'split':<11} {'shards':>7} {'records':>9} {'expected':>9} {'classes':>8} "
             f"{'per class':>11} {'classes/shard':>14}"]
    for split, s in report.splits.items():
        expected = "-" if s.expected_records is None else s.expected_records
        lines.append(f"{split:<11} {s.shards:>7} {s.records:>9} {expected:>9} {s.classes:>8} "
                     f"{f'{s.per_class_min}..{s.per_class_max}':>11} {f'>= {s.min_classes_per_shard}':>14}")
    lines += [f"note: {note}" for note in report.notes]
    if report.ok:
        lines.append("OK: every check holds")
    else:
        lines.append(f"FAILED: {len(report.problems)} problems")
        lines += [problem.line() for problem in report.problems]
    return "\n".join(lines)


def report_json(report: VerifyReport) -> dict:
    return {
        "ok": report.ok,
        "directory": report.directory,
        "index_directory": report.index_directory,
        "deep": report.deep,
        "splits": {split: asdict(stats) for split, stats in report.splits.items()},
        "shards": {s.name: {"split": s.split, "records": s.records, "size": s.size, "sha256": s.sha256,
                            "framing_ok": s.framing_ok, "classes": len(s.labels)} for s in report.shards},
        "problems": [asdict(p) | {"line": p.line()} for p in report.problems],
        "notes": report.notes,
    }


def verify_command(path: Path, deep: bool = False, as_json: bool = False, num_workers: int = 1,
                   index_dir: Path | None = None, no_manifest: bool = False, max_pixels: int | None = None) -> int:
    """`--verify DIR`: print the report (table or JSON); 0 if every check holds, else 1."""
    report = verify_directory(path, deep, num_workers, index_dir, no_manifest, max_pixels)
    print(json.dumps(report_json(report), indent=1) if as_json else format_table(report))
    return 0 if report.ok else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m imagenet_tfrecords.verify",
                                     description="Check every shard of a build: CRCs, counts, schema, labels, indexes.")
    parser.add_argument("directory", type=Path, help="the build's output directory")
    parser.add_argument("--deep", action="store_true", help="also decode every image")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--num_threads", type=int, default=available_cpus(), help="worker processes")
    parser.add_argument("--index_directory", type=Path, help="where the DALI index files are (default DIR/idx)")
    parser.add_argument("--no_manifest", action="store_true", help=NO_MANIFEST_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = _parser().parse_args(argv)
    return run_command(lambda: verify_command(args.directory, args.deep, args.json, args.num_threads,
                                              args.index_directory, args.no_manifest), VERIFY_INTERRUPTED)

