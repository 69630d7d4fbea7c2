"""Orchestrate a build: get each split's images from inputs, plan them, skip finished shards, run the engine,
report."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .engines.local import run_local
from .errors import UserError
from .images.prepare import ImageOptions
from .inputs.classes import resolve_classes
from .inputs.labels import Box, ClassTable
from .inputs.split_images import Ignored
from .inputs.splits import load_boxes, split_images
from .output.array_record import ARRAY_RECORD, array_record_module
from .output.bad_images import write_bad_image_report
from .output.dataset_info import write_dataset_info
from .output.manifest import Manifest, claim_directories, recorded_shard_counts, remove_stale_temporaries
from .output.shard import BadImage, ShardResult
from .plan.shard_count import fitted_shard_count
from .plan.shards import DEFAULT_FILE_FORMAT, FILE_SUFFIXES, SHUFFLE_SEED, ShardSpec, SplitPlan, plan_split, trial_subset
from .progress import SplitProgress
from .storage.folders import folder
from .storage.urls import local_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildConfig:
    output_dir: Path | str  # a local path, or a bucket URL (s3://, gs://, ...)
    train_dir: Path | str | None = None  # a folder, or a bucket URL
    validation_dir: Path | str | None = None
    train_shards: int | None = None  # None: fitted to the data (shard_count); the manifest's splits get the count
    validation_shards: int | None = None
    num_workers: int = 1
    labels_file: Path | None = None  # None: ImageNet's 1000 classes, or the class folder names (inputs/classes)
    metadata_file: Path | None = None  # None: ImageNet's text for a wnid, else the class name
    validation_labels_file: Path | None = None  # None: the shipped ILSVRC-2012 list; or a `file,class` CSV
    bounding_box_file: Path | None = None
    image: ImageOptions = ImageOptions()
    label_offset: int = 1
    skip_bad_images: bool = False
    index_dir: Path | str | None = None  # DALI index files (a path, or a URL as output_dir's); None: none written
    scheduler: str | None = None  # a Dask scheduler address; None: this machine's process pool
    train_tar: Path | None = None  # ILSVRC2012_img_train.tar, read in place instead of train_dir
    validation_tar: Path | None = None  # ILSVRC2012_img_val.tar, read in place instead of validation_dir
    devkit: Path | None = None  # ILSVRC2012_devkit_t12.tar.gz (or its folder): validation ground truth
    bbox_tar: Path | None = None  # ILSVRC2012_bbox_train_v2.tar.gz, read instead of bounding_box_file
    kaggle_root: Path | None = None  # the Kaggle layout's root: train and val folders, label files
    max_images_per_split: int | None = None  # a trial build: this many images of each split (plan/shards.trial_subset)
    output_format: str = DEFAULT_FILE_FORMAT  # "tfrecord", or "array_record" (output/array_record; no DALI index)

    def __post_init__(self) -> None:
        for split in ("train", "validation"):
            if getattr(self, f"{split}_dir") is not None and getattr(self, f"{split}_tar") is not None:
                raise UserError(f"pass --{split}_directory or --{split}_tar, not both")
        if self.bounding_box_file is not None and self.bbox_tar is not None:
            raise UserError("pass --bounding_box_file or --bbox_tar, not both")
        if self.output_format not in FILE_SUFFIXES:
            raise UserError(f"--output_format {self.output_format}: not one of {', '.join(FILE_SUFFIXES)}")
        if self.output_format == ARRAY_RECORD and self.index_dir is not None:
            log.info("ArrayRecord shards index their own records: no DALI index is written (%s is not used)",
                     self.index_dir)
            object.__setattr__(self, "index_dir", None)
        if self.index_dir is not None and (local_path(self.index_dir) is None) != (local_path(self.output_dir) is None):
            raise UserError(f"{self.index_dir}: --index_directory must be where --output_directory is "
                            "(both local, or both in a bucket), so that a finished shard always has its index")

    def manifest_options(self, classes: ClassTable) -> dict:
        """What decides the bytes of the output: a re-run with other values must not mix in."""
        return {
            "image": self.image.as_dict(),
            "label_offset": self.label_offset,
            "shuffle_seed": SHUFFLE_SEED,
            "classes": {"count": len(classes.wnids), "digest": classes.digest()},
            "max_images_per_split": self.max_images_per_split,
            "output_format": self.output_format,
        }


# The build options of manifest_options, named in messages as users know them: by their flags.
OPTION_FLAGS = {
    "image.resize": "--resize_images", "image.height": "--new_height", "image.width": "--new_width",
    "image.mode": "--resize_mode", "image.jpeg_quality": "--jpeg_q", "image.resize_quality": "--resize_quality",
    "image.decode_check": "the decode check (--no_decode_check)", "image.max_pixels": "--max_pixels",
    "image.apply_exif_orientation": "--apply_exif_orientation", "label_offset": "--label_offset",
    "shuffle_seed": "the shuffle seed", "classes.count": "the number of classes (--labels_file, or the class folders)",
    "classes.digest": "the classes (--labels_file, or the class folders)", "max_images_per_split": "--max_images_per_split",
    "output_format": "--output_format",
}


@dataclass
class SplitSummary:
    split: str
    images: int
    shards: int
    resumed_shards: int = 0
    written: int = 0
    bad_images: list[BadImage] = field(default_factory=list)
    seconds: float = 0.0
    ignored: Ignored = Ignored()  # what the scan found beside the images and did not take


def _plan_splits(config: BuildConfig, classes: ClassTable, recorded: dict[str, int]) -> list[SplitPlan]:
    """Plan every requested split. Without a shard flag, a split already in the output directory keeps
    its count (so it resumes), and a new one gets a count fitted to its images."""
    flags = {"train": config.train_shards, "validation": config.validation_shards}
    plans = []
    for split, images in split_images(config, classes):
        if config.max_images_per_split is not None and len(images) > config.max_images_per_split:
            log.info("%s: a trial build of %d of its %d images (--max_images_per_split)", split,
                     config.max_images_per_split, len(images))
            images = trial_subset(images, config.max_images_per_split)
        num_shards = flags[split] or recorded.get(split) or fitted_shard_count(split, len(images))
        plans.append(plan_split(split, images, num_shards))
    return plans


def _run_engine(specs: Iterator[ShardSpec], config: BuildConfig, pending: int) -> Iterator[ShardResult]:
    if config.scheduler is not None:
        from .engines.dask import run_dask  # optional extra: only imported when asked for

        log.info("running the shard workers on the Dask cluster at %s (--num_threads is not used)", config.scheduler)
        return run_dask(specs, config.scheduler, config.skip_bad_images, config.output_format)
    return run_local(specs, min(config.num_workers, max(pending, 1)), config.skip_bad_images)


def _build_split(plan: SplitPlan, config: BuildConfig, classes: ClassTable, boxes: dict[str, list[Box]], manifest: Manifest) -> SplitSummary:
    started = time.monotonic()
    summary = SplitSummary(plan.split, len(plan.images), plan.num_shards, ignored=plan.images.ignored)
    manifest.record_split(plan.split, len(plan.images), plan.num_shards,
                          plan.images.classes_present(len(classes.wnids)), len(classes.wnids))
    sizes = plan.shard_sizes()
    pending: list[tuple[int, np.ndarray]] = []  # shard index, its files' stamps (16 bytes an image)
    done_images = 0
    present = folder(config.output_dir).sizes()  # one listing, not a stat (or a request) per shard
    indexes = folder(config.index_dir).sizes() if config.index_dir is not None else {}
    for spec_index in range(plan.num_shards):
        stamps = plan.stamps(spec_index)  # one stat per file; kept so the engine's spec needs none
        spec = plan.spec(spec_index, classes, boxes, config.output_dir, config.image, config.index_dir, stamps,
                         config.output_format)
        if manifest.is_complete(spec, config.skip_bad_images, present, indexes):
            summary.resumed_shards += 1
            done_images += sizes[spec_index]
        else:
            pending.append((spec_index, stamps))
    if summary.resumed_shards:
        log.info("%s: %d of %d shards already complete, resuming", plan.split, summary.resumed_shards, plan.num_shards)
    progress = SplitProgress(plan.split, len(plan.images), done_images)
    # Specs are made again, one at a time, as the engine asks: holding them all would hold every
    # image's metadata (1.28 M items for ImageNet) at once.
    specs = (plan.spec(i, classes, boxes, config.output_dir, config.image, config.index_dir, stamps,
                       config.output_format) for i, stamps in pending)
    try:
        with closing(_run_engine(specs, config, len(pending))) as results:  # closed: workers stop on an error
            for result in results:
                manifest.record(result)
                summary.written += result.records
                progress.advance(sizes[result.index])
    finally:
        progress.close()
    summary.bad_images = manifest.bad_images(plan.split)
    summary.seconds = time.monotonic() - started
    return summary


def _check_shard_counts(plans: list[SplitPlan], manifest: Manifest) -> None:
    """A split already in the directory keeps its shard count: another `--SPLIT_shards` would leave the
    earlier shards beside the new ones."""
    for plan in plans:
        recorded = manifest.data.get("splits", {}).get(plan.split, {}).get("shards", plan.num_shards)
        if recorded != plan.num_shards:
            raise UserError(
                f"{manifest.output}: holds the {plan.split} split in {recorded} shard(s), not the "
                f"{plan.num_shards} of --{plan.split}_shards; pass --{plan.split}_shards {recorded} (or leave it out) "
                "to resume it, use another --output_directory, or delete its shards and manifest.json"
            )


def run_build(config: BuildConfig) -> list[SplitSummary]:
    """Build every requested split into `config.output_dir`; resumes an interrupted build."""
    if config.output_format == ARRAY_RECORD:
        array_record_module()  # missing: one line, before anything is read or written
    classes = resolve_classes(config, config.label_offset)
    if config.label_offset == 0:  # the one warning of a build, also of generate_tfrecord_protos.py (it runs this)
        log.warning("--label_offset 0: labels 0..%d; training scripts written for the Inception files (Model "
                    "Garden's ImageNet configs, 1001 classes) read label 1 as the first class and would train every "
                    "class one off", len(classes.wnids) - 1)
    output_dir = config.output_dir
    directories = [output_dir] + ([config.index_dir] if config.index_dir is not None else [])
    with claim_directories(directories):  # before the scan: it may keep tar indexes in the output directory
        boxes = load_boxes(config, classes)
        plans = _plan_splits(config, classes, recorded_shard_counts(output_dir))
        with Manifest.open(output_dir, config.manifest_options(classes), OPTION_FLAGS) as manifest:
            _check_shard_counts(plans, manifest)
            manifest.record_index_directory(config.index_dir)
            for directory in directories:
                for name in remove_stale_temporaries(directory):
                    log.info("removed %s, left unfinished by an interrupted run", folder(directory).url_of(name))
            try:
                summaries = [_build_split(plan, config, classes, boxes, manifest) for plan in plans]
            finally:  # workers stopped early, or one that died mid-shard, leave temporaries behind
                for directory in directories:
                    remove_stale_temporaries(directory)
        write_bad_image_report(manifest.output, manifest)
        write_dataset_info(output_dir, manifest.data, classes)
    return summaries
