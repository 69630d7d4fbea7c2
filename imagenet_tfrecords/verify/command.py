"""`--verify OUT`: prove a build is complete and correct, shard by shard, in parallel.

Workers (`shard_check`, no TensorFlow) read each shard once: framing and both masked CRC-32Cs,
SHA-256, the Inception schema of every record, labels, optionally every image (`deep`), and the
shard's DALI index. The parent then checks names, counts, sizes and checksums against
`manifest.json` and the known ImageNet totals, label consistency across shards, the label
histogram and the class mix of train shards (`across_shards`), and prints the `report`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Container
from pathlib import Path

from tqdm import tqdm

from ..commands import add_version_flag
from ..engines.pool import available_cpus, map_unordered
from ..errors import UserError, run_command
from ..images.acceptance import DEFAULT_MAX_PIXELS
from ..output.array_record import ARRAY_RECORD
from ..output.manifest import MANIFEST_NAME, SHARD_NAME, read_manifest
from ..prompts import POSITIVE_FLAG
from ..storage.folders import Bucket, folder
from ..storage.urls import is_url, join, location
from .across_shards import check_across_shards
from .report import VerifyReport, format_table, report_json
from .shard_check import ShardJob, ShardReport, check_shard, shard_name

log = logging.getLogger(__name__)

VERIFY_INTERRUPTED = "interrupted; the check did not finish (it changes nothing): run it again"
MODULE_COMMAND = "python -m imagenet_tfrecords.verify"
NO_MANIFEST_HELP = ("the shards were made by another tool: a missing manifest.json is not a problem "
                    "(counts, sizes and checksums are then not compared with a build's record)")


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
    check_across_shards(report, manifest, set(names))
    return report


def _load_manifest(directory: Path | str, present: Container[str], report: VerifyReport) -> dict | None:
    if MANIFEST_NAME not in present:
        report.notes.append(f"no {MANIFEST_NAME}: counts, sizes and checksums not compared with the build's record")
        return None
    try:
        return read_manifest(directory)  # with the shards of a journal not yet folded in
    except (OSError, ValueError) as exc:
        report.problem(MANIFEST_NAME, f"unreadable ({exc})")
        return None


def _require_manifest(directory: Path | str, present: Container[str], no_manifest: bool, report: VerifyReport) -> None:
    """A build always writes manifest.json; without it, only shards made by another tool verify."""
    if not no_manifest and MANIFEST_NAME not in present:
        report.problem(str(join(directory, MANIFEST_NAME)),
                       "missing, so the shards cannot be checked against the build's record; "
                       "rebuild, or pass --no_manifest if another tool made these shards")


def _resolve_index_dir(directory: Path | str, index_dir: Path | str | None, manifest: dict | None,
                       report: VerifyReport) -> Path | str | None:
    """The index directory asked for, else the one the build recorded, else DIR/idx if present; none for
    ArrayRecord shards."""
    if manifest is not None and manifest.get("options", {}).get("output_format") == ARRAY_RECORD:
        report.notes.append("ArrayRecord shards index their own records: no DALI indexes to check")
        return None
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


def _is_folder(location: Path | str) -> bool:
    """A local directory, or a folder of a bucket that holds anything."""
    if not is_url(location):
        return Path(location).is_dir()
    bucket = Bucket(location)
    return bool(bucket.sizes() or bucket.folders())  # the folders are listed only when it holds no object


def _label_range(manifest: dict | None) -> tuple[int, int] | None:
    if not manifest or not manifest.get("splits"):
        return None
    offset = manifest["options"]["label_offset"]
    return offset, offset + max(split["classes_total"] for split in manifest["splits"].values())


def _build_max_pixels(manifest: dict | None) -> int:
    """The pixel limit the build used (manifest.json), so --deep accepts exactly what it stored."""
    try:
        return int(manifest["options"]["image"]["max_pixels"])
    except (TypeError, KeyError, ValueError):
        return DEFAULT_MAX_PIXELS


def _check_shards(jobs: list[ShardJob], num_workers: int) -> list[ShardReport]:
    reports = []
    with tqdm(total=len(jobs), unit="shard", desc="verify", disable=not sys.stderr.isatty()) as bar:
        for shard in map_unordered(check_shard, jobs, min(num_workers, len(jobs)), describe=shard_name):
            reports.append(shard)
            bar.update()
    return sorted(reports, key=lambda s: s.name)


def verify_command(path: Path, deep: bool = False, as_json: bool = False, num_workers: int = 1,
                   index_dir: Path | None = None, no_manifest: bool = False, max_pixels: int | None = None) -> int:
    """`--verify DIR`: print the report (table or JSON); 0 if every check holds, else 1."""
    report = verify_directory(path, deep, num_workers, index_dir, no_manifest, max_pixels)
    print(json.dumps(report_json(report), indent=1) if as_json else format_table(report))
    return 0 if report.ok else 1


def _prog() -> str:
    """The command as it was run: `python -m imagenet_tfrecords.verify`, or the console command's name."""
    command = Path(sys.argv[0]).name
    return MODULE_COMMAND if command in ("__main__.py", "") else command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=_prog(),
                                     description="Check every shard of a build: CRCs, counts, schema, labels, indexes.")
    add_version_flag(parser)
    parser.add_argument("directory", type=location, help="the build's output directory (a path, or a bucket URL)")
    parser.add_argument("--deep", action="store_true", help="also decode every image")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--num_threads", type=POSITIVE_FLAG, default=available_cpus(), help="worker processes")
    parser.add_argument("--index_directory", type=location, help="where the DALI index files are (default DIR/idx)")
    parser.add_argument("--no_manifest", action="store_true", help=NO_MANIFEST_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = _parser().parse_args(argv)
    return run_command(lambda: verify_command(args.directory, args.deep, args.json, args.num_threads,
                                              args.index_directory, args.no_manifest), VERIFY_INTERRUPTED)
