#!/usr/bin/env python3
"""Download, verify and unpack the ILSVRC-2012 archives (or import ones already on disk). See README.md."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from imagenet_tfrecords.download.archives import FILE_KEYS, parse_file_keys, select_archives
from imagenet_tfrecords.download.checksums import read_md5sum_file
from imagenet_tfrecords.download.credentials import SECRET_ENV, USER_ENV, resolve_credentials
from imagenet_tfrecords.download.fetch import check_base_url
from imagenet_tfrecords.download.pipeline import DownloadConfig, plan_archives, run
from imagenet_tfrecords.download.prompts import ask, confirm
from imagenet_tfrecords.download.unpack import OUTPUTS
from imagenet_tfrecords.errors import run_command
from imagenet_tfrecords.labels import DEFAULT_VALIDATION_LABELS_FILE

DEFAULT_BASE_URL = "https://image-net.org/data/ILSVRC/2012"
DEFAULT_TARGET_DIR = "imagenet-data"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="download_imagenet.py",
        description="Download the ILSVRC-2012 archives (resuming, with MD5 checks) and unpack them once into "
        "train/<wnid>/, validation/<wnid>/, the devkit and bounding_boxes.csv. "
        f"The user ID may come from {USER_ENV}, the access key from {SECRET_ENV} or ~/.netrc "
        "(never from the command line); anything missing is asked for on the terminal.",
    )
    parser.add_argument("--user", help=f"ImageNet user ID (default: {USER_ENV}, ~/.netrc, or ask); '' for a mirror without login")
    parser.add_argument("--target_dir", type=Path, help="where archives and unpacked images go (asked if missing)")
    parser.add_argument("--base_url", default=DEFAULT_BASE_URL,
                        help=f"where the archives are; any HTTP(S) mirror with the same file names (default {DEFAULT_BASE_URL})")
    parser.add_argument("--files", default=",".join(FILE_KEYS),
                        help=f"comma-separated archives to get, from {','.join(FILE_KEYS)} (default: all)")
    parser.add_argument("--from_dir", type=Path, metavar="DIR",
                        help="use the tarballs already in DIR instead of downloading (verified, unpacked from there)")
    parser.add_argument("--checksums", type=Path, metavar="FILE",
                        help="md5sum-format file replacing the built-in MD5 table (for a mirror or a test server)")
    parser.add_argument("--no_extract", action="store_true", help="download and verify only; do not unpack")
    parser.add_argument("--flat_validation", action="store_true",
                        help="unpack validation images flat (validation/ILSVRC2012_val_*.JPEG), not into <wnid>/ folders")
    parser.add_argument("--validation_labels_file", type=Path, default=DEFAULT_VALIDATION_LABELS_FILE,
                        help="wnid of ILSVRC2012_val_N.JPEG on line N (default: the shipped 50,000-line file)")
    parser.add_argument("--yes", action="store_true", help="go ahead without asking for a confirmation")
    return parser


def _config(args: argparse.Namespace) -> DownloadConfig:
    check_base_url(args.base_url)
    keys = parse_file_keys(args.files)
    checksums = read_md5sum_file(args.checksums) if args.checksums else None
    target = args.target_dir or Path(ask("Target directory", "the target directory", "pass --target_dir",
                                         default=DEFAULT_TARGET_DIR))
    return DownloadConfig(
        target_dir=target.expanduser().resolve(),
        archives=select_archives(keys, checksums, str(args.checksums)),
        base_url=args.base_url,
        from_dir=args.from_dir.expanduser().resolve() if args.from_dir else None,
        extract=not args.no_extract,
        flat_validation=args.flat_validation,
        validation_labels_file=args.validation_labels_file,
    )


def _run(args: argparse.Namespace) -> int:
    config = _config(args)
    tasks = plan_archives(config)
    if not any(task.pending for task in tasks):
        print(f"nothing to do: {', '.join(a.name for a in config.archives)} done already in {config.target_dir}")
        return 0
    credentials = resolve_credentials(config.base_url, args.user) if any(t.fetch for t in tasks) else None
    print(f"into {config.target_dir}:")
    print("\n".join(f"  {task.describe()}" for task in tasks))
    if not confirm("Go ahead?", args.yes):
        print("stopped; nothing done")
        return 1
    run(config, tasks, credentials)
    made = [OUTPUTS[a.key] for a in config.archives] if config.extract else [a.name for a in config.archives]
    print(f"done: {', '.join(made)} in {config.target_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
