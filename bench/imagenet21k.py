#!/usr/bin/env python3
"""The parent process's cost at ImageNet-21k scale (14.2 M images, 21,841 classes, ~11,000 shards).

Grows one tree of `<wnid>/<wnid>_<n>.JPEG` over the 21,841 ImageNet-21k synsets under --dir: each
class folder holds one real small JPEG (a copy of one of a few hundred made from scikit-image's
photos) and hard links to it, so 14 M entries take about 22 k inodes and under 1 GB of directory
blocks. A hard link shares its file with its own class only, as the scan requires. At each size in
--entries (ascending: the tree grows in place) it runs, each in a child process whose peak RSS the
kernel reports (wait4):

- scan + plan: `inputs/folders.scan_split`, the fitted shard count and `plan/shards.plan_split`, as a build runs them;
  then, timed apart, one stat per file in plan order (what the resume check stats);
- the manifest: every shard's spec and digest as the build makes them, a tiny shard file and DALI
  index for each, and `Manifest.record` per shard (a journal line, fsync'd) then the fold into
  manifest.json: what a build's parent pays per finished shard, at 10,000+ shards;
- the no-op rerun: the real `build_imagenet_data.py` command again on that directory, every shard
  recorded complete: scan, plan, one stat per file, every spec and digest, the resume check.

Encoding 14 M images is not measured (it is the workers' cost, per image, under Performance).
Prints one JSON object; removes the tree at the end (unless --keep). Run from the repository root:

    python bench/imagenet21k.py --dir /tmp --entries 1400000 5000000 14197122
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from imagenet_tfrecords.build import OPTION_FLAGS  # noqa: E402
from imagenet_tfrecords.cli import build_parser, config_from_args  # noqa: E402
from imagenet_tfrecords.inputs.labels import IMAGENET21K, imagenet21k_wnids, load_class_table  # noqa: E402
from imagenet_tfrecords.output.manifest import Manifest  # noqa: E402
from imagenet_tfrecords.plan.shards import plan_split  # noqa: E402
from imagenet_tfrecords.sample import _load_photos, make_photo  # noqa: E402
from imagenet_tfrecords.output.shard import ShardResult, index_path  # noqa: E402
from imagenet_tfrecords.plan.shard_count import fitted_shard_count  # noqa: E402
from imagenet_tfrecords.inputs.folders import scan_split  # noqa: E402

FALL11_IMAGES = 14_197_122
PHOTOS = 300  # distinct real JPEGs the class files are copies of
PHOTO_SIZE = (64, 48)
BYTES_PER_ENTRY = 96  # directory blocks per hard link, with margin (ext4: ~60)
MIB = 1 << 20


def build_argv(tree: Path, output: Path) -> list[str]:
    """The command line every step plans with, and the no-op rerun runs."""
    return ["--train_directory", str(tree), "--output_directory", str(output), "--labels_file", IMAGENET21K,
            "--num_threads", "2"]


def class_counts(entries: int, classes: int) -> list[int]:
    """Images per class, `entries` in all, as even as they can be."""
    return [entries // classes + (c < entries % classes) for c in range(classes)]


def check_room(directory: Path, entries: int, classes: int) -> None:
    stats = os.statvfs(directory)
    need_bytes = entries * BYTES_PER_ENTRY + classes * 8192
    if stats.f_bavail * stats.f_frsize < need_bytes or stats.f_favail < 2 * classes + 50_000:
        sys.exit(f"{directory}: needs {need_bytes / 1e9:.1f} GB and {2 * classes + 50_000:,} inodes free for the "
                 f"tree (df, df -i); pass another --dir")


def grow_tree(tree: Path, entries: int, wnids: list[str], photos: list[bytes]) -> float:
    """Add hard links until the tree holds `entries` images; returns the seconds it took."""
    started = time.perf_counter()
    for c, (wnid, count) in enumerate(zip(wnids, class_counts(entries, len(wnids)))):
        folder = tree / wnid
        first = folder / f"{wnid}_0.JPEG"
        if not first.exists():
            folder.mkdir(parents=True, exist_ok=True)
            first.write_bytes(photos[c % len(photos)])  # a file of its own: a link across classes is refused
        have, prefix = sum(1 for _ in os.scandir(folder)), os.path.join(folder, wnid)
        for n in range(have, count):
            os.link(first, f"{prefix}_{n}.JPEG")
    return time.perf_counter() - started


def make_photos() -> list[bytes]:
    rng, sources = random.Random(21), _load_photos()
    photos = []
    for _ in range(PHOTOS):
        buffer = io.BytesIO()
        make_photo(sources, rng, PHOTO_SIZE).save(buffer, "JPEG", quality=85)
        photos.append(buffer.getvalue())
    return photos


def scan_and_plan(tree: Path, output: Path):
    """Scan and plan as the build does, with the config its command line gives; and the seconds of each."""
    config = config_from_args(build_parser().parse_args(build_argv(tree, output)))
    classes = load_class_table(config.labels_file, config.metadata_file, config.label_offset)
    started = time.perf_counter()
    images = scan_split("train", config.train_dir, classes, None)
    scanned = time.perf_counter()
    plan = plan_split("train", images, fitted_shard_count("train", len(images)))
    planned = time.perf_counter()
    timings = {"scan_s": round(scanned - started, 2), "plan_s": round(planned - scanned, 2),
               "scan_plan_s": round(planned - started, 2)}
    return config, classes, plan, {"images": len(images), "shards": plan.num_shards, **timings}


def step_scan_plan(tree: Path, output: Path) -> dict:
    """Scan and plan; then, apart, one stat per file in plan order, as the resume check makes them."""
    _, _, plan, report = scan_and_plan(tree, output)
    started = time.perf_counter()
    for index in range(plan.num_shards):
        plan.stamps(index)
    return {**report, "stat_s": round(time.perf_counter() - started, 2)}


def step_manifest(tree: Path, output: Path) -> dict:
    """Record every shard complete, as a build's parent does when each arrives; the time in the manifest alone."""
    config, classes, plan, _ = scan_and_plan(tree, output)
    gc.freeze()  # only the manifest's own cost is reported: spare the collector's walks over 14 M names
    output.mkdir(parents=True, exist_ok=True)
    Path(config.index_dir).mkdir(parents=True, exist_ok=True)
    recording = 0.0
    with Manifest.open(output, config.manifest_options(classes), OPTION_FLAGS) as manifest:
        manifest.record_index_directory(config.index_dir)
        manifest.record_split("train", len(plan.images), plan.num_shards,
                              plan.images.classes_present(len(classes.wnids)), len(classes.wnids))
        for index, size in enumerate(plan.shard_sizes()):
            spec = plan.spec(index, classes, {}, config.output_dir, config.image, config.index_dir)
            shard = Path(spec.output_dir) / spec.name
            shard.write_bytes(b"\0" * 16)
            index_path(spec.index_dir, spec.name).write_text("0 16\n")
            result = ShardResult("train", index, spec.name, spec.digest(), size, 16, "0" * 64, ())
            started = time.perf_counter()
            manifest.record(result)
            recording += time.perf_counter() - started
        started = time.perf_counter()
    folded = time.perf_counter() - started
    return {"shards": plan.num_shards, "record_ms_per_shard": round(1000 * recording / plan.num_shards, 3),
            "fold_s": round(folded, 3), "manifest_bytes": (output / "manifest.json").stat().st_size}


def summary_row(stdout: str) -> dict:
    """The train row of the command's summary table: split images written shards resumed bad seconds."""
    row = stdout.splitlines()[1].split()
    return {"images": int(row[1]), "written": int(row[2]), "shards": int(row[3]), "resumed": int(row[4])}


STEPS = {"scan_plan": step_scan_plan, "manifest": step_manifest}


def measured(command: list[str]) -> tuple[str, dict]:
    """Run a command: its stdout, and its wall and CPU seconds and peak RSS in MiB (the kernel's high-water
    mark), from wait4. CPU seconds (user + system) show what another process on the machine took from it."""
    with tempfile.TemporaryFile("w+") as log:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        stdout = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            log.seek(0)
            sys.exit(f"{command[1]} failed (exit {child.returncode}): {log.read().strip().splitlines()[-1:]}")
    return stdout, {"wall_s": round(seconds, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
                    "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def measured_step(step: str, tree: Path, output: Path) -> dict:
    stdout, usage = measured([sys.executable, __file__, "--step", step, "--tree", str(tree), "--output", str(output)])
    return {**json.loads(stdout), **usage}


def noop_rerun(tree: Path, output: Path) -> dict:
    """The real command on a directory where every shard is complete: nothing written, every shard resumed."""
    stdout, usage = measured([sys.executable, str(REPO / "build_imagenet_data.py"), *build_argv(tree, output)])
    return {**summary_row(stdout), **usage}


def run(directory: Path, sizes: list[int], keep: bool) -> dict:
    wnids = imagenet21k_wnids()
    root = directory / "imagenet21k-bench"
    tree, output = root / "train", root / "out"
    shutil.rmtree(root, ignore_errors=True)  # a tree left by --keep: it is grown from nothing
    check_room(directory, max(sizes), len(wnids))
    photos = make_photos()
    report: dict = {"classes": len(wnids), "photos": len(photos), "cpus": os.cpu_count(), "sizes": []}
    try:
        for entries in sorted(sizes):
            grown = grow_tree(tree, entries, wnids, photos)
            shutil.rmtree(output, ignore_errors=True)
            row = {"entries": entries, "tree_grow_s": round(grown, 1)}
            for step in STEPS:
                row[step] = measured_step(step, tree, output)
                print(f"{entries:,} entries: {step} {json.dumps(row[step])}", file=sys.stderr, flush=True)
            row["noop_rerun"] = noop_rerun(tree, output)
            print(f"{entries:,} entries: noop_rerun {json.dumps(row['noop_rerun'])}", file=sys.stderr, flush=True)
            report["sizes"].append(row)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    report["per_added_entry"] = [growth(a, b) for a, b in zip(report["sizes"], report["sizes"][1:])]
    return report


def growth(smaller: dict, larger: dict) -> dict:
    """What each added entry cost between two sizes: linear if it stays the same from size to size."""
    added = larger["entries"] - smaller["entries"]

    def per_entry(step: str, key: str, scale: float) -> float:
        return round(scale * (larger[step][key] - smaller[step][key]) / added, 2)

    return {
        "entries": [smaller["entries"], larger["entries"]],
        "scan_plan_us": per_entry("scan_plan", "scan_plan_s", 1e6),
        "scan_plan_rss_bytes": per_entry("scan_plan", "peak_rss_mib", MIB),
        "stat_us": per_entry("scan_plan", "stat_s", 1e6),
        "noop_rerun_us": per_entry("noop_rerun", "wall_s", 1e6),
        "noop_rerun_cpu_us": per_entry("noop_rerun", "cpu_s", 1e6),
        "noop_rerun_rss_bytes": per_entry("noop_rerun", "peak_rss_mib", MIB),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp"), help="where the tree is made (default /tmp)")
    parser.add_argument("--entries", type=int, nargs="+", default=[1_400_000, 5_000_000, FALL11_IMAGES],
                        help="tree sizes to measure, ascending (default: 1.4 M, 5 M and fall11's 14,197,122)")
    parser.add_argument("--keep", action="store_true", help="leave the tree and the last output in place")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # one measured child
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(STEPS[args.step](args.tree, args.output)))
        return
    print(json.dumps(run(args.dir, args.entries, args.keep), indent=1))


if __name__ == "__main__":
    main()
