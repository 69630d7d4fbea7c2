#!/usr/bin/env python3
"""Throughput of a build from ILSVRC-shaped tarballs against one from the extracted tree, same corpus, same run.

Prints one JSON object: images/s of each (best of --repeats, each into a fresh output directory)
and their ratio. The tar's header index is made once, by the first tar build (its time is reported
apart), and kept for the later ones, as a resumed build keeps it. Run from the repository root:

    python bench/tar_vs_tree.py --images 2000 --workers 4 --resize
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import make_corpus  # noqa: E402

from imagenet_tfrecords.build import BuildConfig, run_build  # noqa: E402
from imagenet_tfrecords.images.prepare import ImageOptions  # noqa: E402


def pack_train_tar(train: Path, target: Path) -> Path:
    """root/train/<wnid>/*.JPEG -> a tar of per-class <wnid>.tar, as ILSVRC2012_img_train.tar is."""
    outer_path = target / "ILSVRC2012_img_train.tar"
    if outer_path.exists():
        return outer_path
    with tarfile.open(target / ".partial.tar", "w", format=tarfile.GNU_FORMAT) as outer:
        for class_dir in sorted(p for p in train.iterdir() if p.is_dir()):
            inner_path = target / f"{class_dir.name}.tar"
            with tarfile.open(inner_path, "w", format=tarfile.GNU_FORMAT) as inner:
                for image in sorted(class_dir.iterdir()):
                    inner.add(image, arcname=image.name)
            outer.add(inner_path, arcname=inner_path.name)
            inner_path.unlink()
    (target / ".partial.tar").rename(outer_path)
    return outer_path


def timed_build(config: BuildConfig, keep: str | None = None) -> float:
    """Seconds to build into a fresh output directory; `keep` names a subfolder carried over."""
    kept = config.output_dir.parent / f".kept-{keep}"
    if keep and (config.output_dir / keep).exists():
        shutil.rmtree(kept, ignore_errors=True)
        (config.output_dir / keep).rename(kept)
    shutil.rmtree(config.output_dir, ignore_errors=True)
    if keep and kept.exists():
        config.output_dir.mkdir(parents=True)
        kept.rename(config.output_dir / keep)
    started = time.perf_counter()
    run_build(config)
    return time.perf_counter() - started


def build_parser(description: str, work_dir: str) -> argparse.ArgumentParser:
    """The flags of a bench that builds a corpus several ways: its size, workers, shards, rounds and mode."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--resize", action="store_true", help="resize to 256x256 (default: copy the JPEGs)")
    parser.add_argument("--work_dir", type=Path, default=Path(tempfile.gettempdir()) / work_dir)
    return parser


def main() -> None:
    args = build_parser(__doc__.splitlines()[0], "bench-tar-vs-tree").parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    train = make_corpus(args.work_dir / "corpus", args.images)
    tar = pack_train_tar(train, args.work_dir)
    common = dict(train_shards=args.shards, num_workers=args.workers, image=ImageOptions(resize=args.resize),
                  index_dir=None)
    tree = BuildConfig(output_dir=args.work_dir / "out-tree", train_dir=train, **common)
    packed = BuildConfig(output_dir=args.work_dir / "out-tar", train_tar=tar, **common)
    shutil.rmtree(packed.output_dir, ignore_errors=True)
    first_tar = timed_build(packed)  # includes indexing the tar's headers
    seconds = {"tree": [], "tar": []}
    for _ in range(args.repeats):  # alternate, so both see the same page-cache state
        seconds["tree"].append(timed_build(tree))
        seconds["tar"].append(timed_build(packed, keep=".tar_index"))
    rates = {name: args.images / min(times) for name, times in seconds.items()}
    print(json.dumps({
        "images": args.images, "workers": args.workers, "resize": args.resize,
        "tree_images_per_s": round(rates["tree"], 1), "tar_images_per_s": round(rates["tar"], 1),
        "tar_over_tree": round(rates["tar"] / rates["tree"], 3),
        "first_tar_build_seconds_with_index_scan": round(first_tar, 2),
        "seconds": {name: [round(s, 2) for s in times] for name, times in seconds.items()},
    }))


if __name__ == "__main__":
    main()
