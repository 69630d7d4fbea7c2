"""download_imagenet.py: download, verify and unpack the ILSVRC-2012 archives (or import ones already on disk)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from ..commands import add_version_flag
from ..errors import run_command
from ..generate import DATA_DIR_ENV
from ..inputs.labels import DEFAULT_VALIDATION_LABELS_FILE
from ..prompts import ask, confirm
from .archives import FILE_KEYS, parse_file_keys, select_archives
from .checksums import read_md5sum_file
from .credentials import SECRET_ENV, USER_ENV, resolve_credentials
from .fetch import check_base_url, open_source
from .pipeline import (KEEP_ARCHIVES, KEEP_BOTH, KEEP_CHOICES, DownloadConfig, builder_command, ensure_plan_fits,
                       plan_archives, run, space_lines, with_remote_sizes)
from .unpack import OUTPUTS

DEFAULT_BASE_URL = "https://image-net.org/data/ILSVRC/2012"
# Offered at the prompt: where the interactive generator looks for the raw data, else a folder in the home
# directory; never the current folder, which may be this checkout.
DEFAULT_TARGET_DIR = "~/imagenet-data"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Download the ILSVRC-2012 archives (resuming, with MD5 checks) and unpack them once into "
        "train/<wnid>/, validation/<wnid>/, the devkit and bounding_boxes.csv. "
        f"The user ID may come from {USER_ENV}, the access key from {SECRET_ENV} or ~/.netrc "
        "(never from the command line); anything missing is asked for on the terminal.",
    )
    add_version_flag(parser)
    parser.add_argument("--user", help=f"ImageNet user ID (default: {USER_ENV}, ~/.netrc, or ask); '' for a mirror without login")
    parser.add_argument("--target_dir", type=Path,
                        help=f"where archives and unpacked images go (asked if missing; offered: ${DATA_DIR_ENV} "
                        f"or {DEFAULT_TARGET_DIR})")
    parser.add_argument("--base_url", default=DEFAULT_BASE_URL,
                        help=f"where the archives are; any HTTP(S) mirror with the same file names (default {DEFAULT_BASE_URL})")
    parser.add_argument("--files", default=",".join(FILE_KEYS),
                        help=f"comma-separated archives to get, from {','.join(FILE_KEYS)} (default: all)")
    parser.add_argument("--from_dir", type=Path, metavar="DIR",
                        help="use the tarballs already in DIR instead of downloading (verified, unpacked from there)")
    parser.add_argument("--checksums", type=Path, metavar="FILE",
                        help="md5sum-format file replacing the built-in MD5 table (for a mirror or a test server)")
    parser.add_argument("--keep", choices=KEEP_CHOICES, default=KEEP_BOTH,
                        help="what stays on disk: both (default) the archives and the unpacked tree (about twice "
                        "145 GB); archives: download and verify only, nothing unpacked (145 GB; build with "
                        "--train_tar/--validation_tar, which read the tars in place); extracted: delete each "
                        "archive once it is unpacked")
    parser.add_argument("--no_extract", dest="keep", action="store_const", const=KEEP_ARCHIVES,
                        help="the same as --keep archives")
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
    offered = os.environ.get(DATA_DIR_ENV) or str(Path(DEFAULT_TARGET_DIR).expanduser())
    target = args.target_dir or Path(ask("Target directory", "the target directory", "pass --target_dir",
                                         default=offered))
    return DownloadConfig(
        target_dir=target.expanduser().resolve(),
        archives=select_archives(keys, checksums, str(args.checksums)),
        base_url=args.base_url,
        from_dir=args.from_dir.expanduser().resolve() if args.from_dir else None,
        keep=args.keep,
        flat_validation=args.flat_validation,
        validation_labels_file=args.validation_labels_file,
    )


def _run(args: argparse.Namespace, build_command: Sequence[str]) -> int:
    config = _config(args)
    tasks = plan_archives(config)
    if not any(task.pending for task in tasks):
        print(f"nothing to do: {', '.join(a.name for a in config.archives)} done already in {config.target_dir}")
        return 0
    ensure_plan_fits(config, tasks)  # with the sizes known so far, before a user ID or key is asked for
    fetching = any(task.fetch for task in tasks)
    source = open_source(config.base_url, resolve_credentials(config.base_url, args.user)) if fetching else None
    with source or nullcontext():
        if source:
            tasks = with_remote_sizes(tasks, source)
        print(f"into {config.target_dir}:")
        print("\n".join([f"  {task.describe()}" for task in tasks] + space_lines(config, tasks)))
        ensure_plan_fits(config, tasks)
        if not confirm("Go ahead?", args.yes):
            print("stopped; nothing done")
            return 1
        run(config, tasks, source)
    if config.extract:
        print(f"done: {', '.join(OUTPUTS[a.key] for a in config.archives)} in {config.target_dir}")
    else:
        print(f"done: {', '.join(a.name for a in config.archives)} verified; build straight from them with\n"
              f"  {builder_command(tasks, build_command)}")
    return 0


def main(argv: list[str] | None = None, build_command: Sequence[str] = ("build-imagenet-data",)) -> int:
    """The download; `build_command` starts the build command printed at the end (see `commands`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # the download's Retry logs each retry in plain words
    args = build_parser().parse_args(argv)
    with logging_redirect_tqdm():  # log lines go above the progress bars, never glued onto one
        return run_command(lambda: _run(args, build_command))
