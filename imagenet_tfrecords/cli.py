"""Command line of build_imagenet_data.py: flags compatible with the Inception script, and more."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .build import BuildConfig, SplitSummary, run_build
from .commands import add_version_flag
from .engines.pool import available_cpus
from .errors import RESUME_HINT, UserError, run_command
from .images.acceptance import DEFAULT_MAX_PIXELS
from .images.prepare import ImageOptions, ResizeMode, ResizeQuality
from .inputs.folders import resolve
from .output.array_record import refuse_dali_index
from .output.manifest import BAD_IMAGES_REPORT
from .plan.shard_count import SHARD_RULE
from .plan.shards import DEFAULT_FILE_FORMAT, FILE_SUFFIXES
from .prompts import POSITIVE_FLAG, flag_type, parse_number_in
from .sample import SAMPLE_DIR_HELP
from .storage.urls import STORE_LOGGERS, Url, check_scheme, join, local_path, location
from .verify.command import NO_MANIFEST_HELP, VERIFY_INTERRUPTED

log = logging.getLogger("imagenet_tfrecords")

SAMPLE_SHARDS = {"train": 4, "validation": 2}
PER_USER_SAMPLE = Path("<per-user sample folder>")  # `--sample` alone: `sample.default_sample_dir`, found when used


JPEG_QUALITY = flag_type(parse_number_in(1, 100))


# The flags that take a bucket (s3://, gs://, any fsspec URL) as well as a local path.
BUCKET_FLAGS = frozenset({"output_directory", "index_directory", "train_tar", "validation_tar", "train_directory",
                          "validation_directory", "verify"})


def _refuse_urls(args: argparse.Namespace) -> None:
    """A URL where only a local path will do, or of a storage fsspec does not know: one line, before anything is
    written (never a local folder named `s3:`)."""
    for flag, value in vars(args).items():
        if isinstance(value, Url) and flag in BUCKET_FLAGS:
            check_scheme(value)
        elif isinstance(value, Url):
            raise UserError(f"{value}: --{flag} takes a local or mounted path, not a URL; copy the file to a "
                            f"local or NFS path (buckets work for {', '.join('--' + f for f in sorted(BUCKET_FLAGS))})")


def _location(value: Path | str) -> Path | str:
    """An absolute local path (workers, local or on a cluster, may run in another directory), or a bucket URL."""
    path = local_path(value)
    return resolve(path) if path is not None else str(value).rstrip("/")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert ImageNet-layout images into sharded TFRecord files of tf.train.Example protos "
        "(Inception schema). Re-running the same command resumes an interrupted build.",
    )
    add_version_flag(parser)
    io = parser.add_argument_group("input and output")
    io.add_argument("--train_directory", type=location, help="training images as <dir>/<wnid>/*.JPEG")
    io.add_argument("--validation_directory", type=location,
                    help="validation images as <dir>/<wnid>/*.JPEG, or flat ILSVRC2012_val_*.JPEG")
    io.add_argument("--output_directory", type=location, help="where the shards, manifest.json and reports go")
    io.add_argument("--output_format", choices=tuple(FILE_SUFFIXES), default=DEFAULT_FILE_FORMAT,
                    help="tfrecord: TFRecord shards (default); array_record: ArrayRecord shards "
                    "(train-00000-of-00004.array_record) of the same records, with random access for Grain and "
                    "TensorFlow Datasets, and no DALI index (pip install \"imagenet-tfrecords[array_record]\")")
    io.add_argument("--sample", type=location, nargs="?", const=PER_USER_SAMPLE, metavar="DIR",
                    help="make a small ILSVRC-shaped sample under DIR/raw (no network, once: a later run reuses it) "
                    f"and build it into DIR/tfrecords; DIR defaults to {SAMPLE_DIR_HELP}")
    tars = parser.add_argument_group("ILSVRC tarballs and the Kaggle layout (read in place, nothing extracted)")
    tars.add_argument("--train_tar", type=location, help="ILSVRC2012_img_train.tar (a tar of <wnid>.tar class tars)")
    tars.add_argument("--validation_tar", type=location, help="ILSVRC2012_img_val.tar (flat ILSVRC2012_val_*.JPEG)")
    tars.add_argument("--devkit", type=location,
                      help="ILSVRC2012_devkit_t12.tar.gz (or its folder): validation labels from its ground truth, "
                      "checked against --validation_labels_file")
    tars.add_argument("--bbox_tar", type=location,
                      help="ILSVRC2012_bbox_train_v2.tar.gz: bounding boxes from its XML (instead of --bounding_box_file)")
    tars.add_argument("--kaggle_root", type=location, metavar="DIR",
                      help="the Kaggle download: DIR holds ILSVRC/Data/CLS-LOC/{train,val}, LOC_synset_mapping.txt "
                      "and LOC_val_solution.csv")
    tars.add_argument("--from_tars", action="store_true",
                      help="with --sample: also pack the sample as the ILSVRC tarballs (DIR/tars) and build from those")
    shards = parser.add_argument_group("sharding and workers")
    shards.add_argument("--train_shards", type=POSITIVE_FLAG,
                        help=f"number of train shards (default: fitted to the data, {SHARD_RULE})")
    shards.add_argument("--validation_shards", type=POSITIVE_FLAG,
                        help="number of validation shards (default: fitted to the data, as for train)")
    shards.add_argument("--max_images_per_split", type=POSITIVE_FLAG, metavar="N",
                        help="a trial build: only N images of each split, a fixed mix of every class (use "
                        "another --output_directory for the full build)")
    shards.add_argument("--num_threads", type=POSITIVE_FLAG, default=available_cpus(),
                        help="worker processes (default: CPU count); the output does not depend on it")
    labels = parser.add_argument_group("labels")
    labels.add_argument("--labels_file", type=location,
                        help="one class per line, in label order: ImageNet wnids or your own class folder names "
                        "(default: the 1000 ILSVRC-2012 classes, or your class folder names, sorted, when they are "
                        "not ImageNet wnids); imagenet21k: the 21,841 ImageNet-21k (fall11) classes")
    labels.add_argument("--imagenet_metadata_file", type=location,
                        help="<class><TAB><human text> lines, one for every class (default: ImageNet's text for "
                        "an ImageNet wnid, else the class name)")
    labels.add_argument("--validation_labels_file", type=location,
                        help="for a flat validation folder: a CSV of 'file,class' lines (header optional), or one "
                        "class per line, line N for ILSVRC2012_val_N.JPEG (default: the ILSVRC-2012 labels)")
    labels.add_argument("--bounding_box_file", type=location,
                        help="CSV of <file>,<xmin>,<ymin>,<xmax>,<ymax> (relative), as process_bounding_boxes.py writes")
    labels.add_argument("--label_offset", type=int, choices=(1, 0), default=1,
                        help="1: labels 1..1000 with 0 as background (Inception, default); 0: labels 0..999")
    images = parser.add_argument_group("images")
    images.add_argument("--resize_images", action="store_true", help="resize and re-encode every image")
    images.add_argument("--new_height", type=POSITIVE_FLAG, default=256, help="height after resizing (default 256)")
    images.add_argument("--new_width", type=POSITIVE_FLAG, default=256, help="width after resizing (default 256)")
    images.add_argument("--resize_mode", choices=[m.value for m in ResizeMode], default=ResizeMode.STRETCH.value,
                        help="stretch: exactly HxW (aspect not kept); shorter_side: keep aspect, smallest size "
                        "covering HxW; center_crop: shorter_side, then the centre HxW")
    images.add_argument("--resize_quality", choices=[q.value for q in ResizeQuality], default=ResizeQuality.DEFAULT.value,
                        help="fast: quickest, at least the quality of TensorFlow's bilinear resize; default: "
                        "better and still faster than TensorFlow ops; best: closest to a full-resolution Lanczos resize")
    images.add_argument("--jpeg_q", type=JPEG_QUALITY, default=90, help="JPEG quality of re-encoded images (default 90)")
    images.add_argument("--no_decode_check", action="store_true",
                        help="copy mode: store JPEGs without first proving that TensorFlow's decode_jpeg reads them "
                        "(only for files already checked; a corrupt one then fails later, in training)")
    images.add_argument("--max_pixels", type=POSITIVE_FLAG, default=None,
                        help=f"images with more pixels are bad images, refused before decoding "
                        f"(default {DEFAULT_MAX_PIXELS:,}); --verify --deep uses the build's limit")
    images.add_argument("--apply_exif_orientation", action="store_true",
                        help="turn images upright by their EXIF orientation tag, and their boxes with them "
                        "(default: pixels stored as they are, as TensorFlow reads them, the tag ignored)")
    images.add_argument("--skip_bad_images", action="store_true",
                        help=f"leave out unreadable images, listing them in {BAD_IMAGES_REPORT}, instead of stopping")
    index = parser.add_argument_group("DALI index and verification")
    index.add_argument("--index_directory", type=location,
                       help="where each shard's DALI index (<shard>.idx) is written with it (default OUT/idx)")
    index.add_argument("--no_index", action="store_true", help="do not write DALI index files")
    index.add_argument("--verify", type=location, metavar="DIR",
                       help="check every shard in DIR (CRCs, counts, schema, labels, indexes) instead of building")
    index.add_argument("--deep", action="store_true", help="with --verify: also decode every image")
    index.add_argument("--json", action="store_true", help="with --verify: print the report as JSON")
    index.add_argument("--no_manifest", action="store_true", help=f"with --verify: {NO_MANIFEST_HELP}")
    index.add_argument("--write_index", type=location, metavar="DIR",
                       help="write DALI index files for the shards in DIR (built by any tool) instead of building")
    engine = parser.add_argument_group("distributed build")
    engine.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the shard workers on a Dask cluster (e.g. tcp://HOST:8786) instead of local processes")
    return parser


def with_sample(args: argparse.Namespace) -> argparse.Namespace:
    """`--sample [DIR]`: make the sample under DIR/raw unless an earlier run made it there (with `--from_tars`
    also its tarballs under DIR/tars) and return the flags with the sample's locations and shard counts wherever
    none was given."""
    if args.sample is None:
        if args.from_tars:
            raise UserError("--from_tars goes with --sample [DIR]")
        return args
    from .sample import default_sample_dir, find_sample, make_sample

    root = default_sample_dir() if args.sample is PER_USER_SAMPLE else args.sample
    sample = find_sample(root / "raw")
    if sample is not None:
        log.info("using the sample dataset under %s, made by an earlier run (shards into %s)", root / "raw",
                 root / "tfrecords")
    else:
        log.info("making the sample dataset under %s (shards into %s)", root / "raw", root / "tfrecords")
        sample = make_sample(root / "raw")
    if args.from_tars:
        from .sample import make_sample_tarballs

        tarballs = make_sample_tarballs(sample, root / "tars")
        found = {"train_tar": tarballs.train_tar, "validation_tar": tarballs.validation_tar,
                 "devkit": tarballs.devkit, "bbox_tar": tarballs.bbox_tar}
    else:
        found = {"train_directory": sample.train_dir, "validation_directory": sample.validation_dir,
                 "bounding_box_file": sample.bounding_box_file}
    found |= {"output_directory": root / "tfrecords",
              "train_shards": SAMPLE_SHARDS["train"], "validation_shards": SAMPLE_SHARDS["validation"]}
    return argparse.Namespace(**vars(args) | {flag: getattr(args, flag) or value for flag, value in found.items()})


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    """The build that the flags describe (after `with_sample`); reads nothing and writes nothing."""
    if args.output_directory is None:
        raise UserError("pass --output_directory (where the shards go)")
    output_dir = _location(args.output_directory)
    # Absolute paths: workers (local or on a cluster) may run in another directory.
    train_dir, validation_dir, train_tar, validation_tar, bounding_box_file, devkit, bbox_tar, kaggle_root = (
        _location(path) if path is not None else None
        for path in (args.train_directory, args.validation_directory, args.train_tar, args.validation_tar,
                     args.bounding_box_file, args.devkit, args.bbox_tar, args.kaggle_root)
    )
    index_dir = None if args.no_index else _location(args.index_directory or join(output_dir, "idx"))
    return BuildConfig(
        output_dir=output_dir,
        train_dir=train_dir,
        validation_dir=validation_dir,
        train_shards=args.train_shards,  # None: fitted to the data
        validation_shards=args.validation_shards,
        num_workers=args.num_threads,
        labels_file=args.labels_file,
        metadata_file=args.imagenet_metadata_file,
        validation_labels_file=args.validation_labels_file,
        bounding_box_file=bounding_box_file,
        image=ImageOptions(args.resize_images, args.new_height, args.new_width, ResizeMode(args.resize_mode),
                           args.jpeg_q, ResizeQuality(args.resize_quality), decode_check=not args.no_decode_check,
                           max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
                           apply_exif_orientation=args.apply_exif_orientation),
        label_offset=args.label_offset,
        skip_bad_images=args.skip_bad_images,
        index_dir=index_dir,
        scheduler=args.scheduler,
        train_tar=train_tar,
        validation_tar=validation_tar,
        devkit=devkit,
        bbox_tar=bbox_tar,
        kaggle_root=kaggle_root,
        max_images_per_split=args.max_images_per_split,
        output_format=args.output_format,
    )


def format_summary(summaries: list[SplitSummary], output_dir: Path | str) -> str:
    lines = [f"{'split':<11} {'images':>9} {'written':>9} {'shards':>7} {'resumed':>8} {'bad':>5} {'seconds':>8}"]
    for s in summaries:
        lines.append(f"{s.split:<11} {s.images:>9} {s.written:>9} {s.shards:>7} {s.resumed_shards:>8} "
                     f"{len(s.bad_images):>5} {s.seconds:>8.1f}")
    lines += [f"{s.split}: {s.ignored.describe()}" for s in summaries if s.ignored.count]
    lines.append(f"shards in {output_dir}")
    if any(s.bad_images for s in summaries):
        lines.append(f"left out bad images, listed in {join(output_dir, BAD_IMAGES_REPORT)}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    _refuse_urls(args)
    if args.verify is not None:
        from .verify.command import verify_command

        return verify_command(args.verify, deep=args.deep, as_json=args.json, num_workers=args.num_threads,
                              index_dir=args.index_directory, no_manifest=args.no_manifest,
                              max_pixels=args.max_pixels)
    if args.write_index is not None:
        from .output.dali_index import write_index_command

        refuse_dali_index(args.write_index, args.output_format)
        return write_index_command(args.write_index, args.index_directory)
    config = config_from_args(with_sample(args))
    summaries = run_build(config)
    print(format_summary(summaries, config.output_dir))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for name in STORE_LOGGERS:  # their INFO lines ("Found credentials in environment variables") are noise here
        logging.getLogger(name).setLevel(logging.WARNING)
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.error("nothing to do: pass --train_directory/--validation_directory (or --train_tar/"
                     "--validation_tar, or --kaggle_root) and --output_directory, "
                     f"or try `{parser.prog} --sample` for the built-in sample")
    args = parser.parse_args(argv)
    return run_command(lambda: _run(args), VERIFY_INTERRUPTED if args.verify is not None else RESUME_HINT)
