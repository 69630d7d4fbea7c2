"""The checks of `--verify` across shards, once every shard has been read.

Names, counts, sizes and checksums against `manifest.json` and the known ImageNet totals, stray
files, label consistency across shards, the label histogram and the class mix of train shards.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from ..output.manifest import MANIFEST_NAME
from ..plan.shards import DEFAULT_FILE_FORMAT, FILE_SUFFIXES, shard_file_format, split_shard_name
from .report import SplitStats, VerifyReport
from .shard_check import ShardReport, where_in_shard
from .stray_files import check_stray_files

IMAGENET_TOTALS = {"train": 1_281_167, "validation": 50_000}  # devkit readme (docs/imagenet-facts.md, "Split totals")
IMAGENET_PER_CLASS = {"train": (732, 1300), "validation": (50, 50)}  # images per synset, devkit readme
IMAGENET_CLASSES = 1000
SHUFFLE_CHECKED_SPLITS = ("train",)


def check_across_shards(report: VerifyReport, manifest: dict | None, names: set[str]) -> None:
    """Every shard's problems into `report`, then the checks of the whole directory."""
    if not report.shards:
        report.problem(report.directory, "no shards (train-00000-of-NNNNN, validation-...) found")
    for shard in report.shards:
        report.problems += shard.problems
        if shard.problems_left_out:
            report.problem(shard.name, f"... and {shard.problems_left_out} more problems in this shard")
    check_stray_files(report.directory, report.index_directory, names, report)
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


def _check_names(names: list[str], manifest: dict | None, report: VerifyReport) -> None:
    """Shard names contiguous 00000..N-1 of N per split, as planned; none missing, none extra."""
    totals: dict[str, set[int]] = defaultdict(set)
    suffixes = {FILE_SUFFIXES[shard_file_format(name)] for name in names}
    for name in names:
        split, _, total = split_shard_name(name)
        totals[split].add(total)
    for split, seen in sorted(totals.items()):
        if len(seen) > 1:
            report.problem(split, f"shards disagree on the shard count: -of-{sorted(seen)}")
    planned = {split: {info["shards"]} for split, info in (manifest or {}).get("splits", {}).items()}
    suffix = FILE_SUFFIXES[(manifest or {}).get("options", {}).get("output_format", DEFAULT_FILE_FORMAT)] \
        if manifest is not None else next(iter(suffixes), "")  # one format per directory
    expected = {f"{split}-{i:05d}-of-{n:05d}{suffix}" for split, counts in (planned or totals).items()
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
            first_seen.setdefault(triple, shard.name + where_in_shard(offset, image, " ", shard.unit))
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
