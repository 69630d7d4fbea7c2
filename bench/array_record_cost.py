"""The build cost of `--output_format array_record` against TFRecord, measured in the same run.

    python bench/array_record_cost.py [--images 1000] [--rounds 3] [--shards 8] [--workers 1] [--resize]

Builds the same corpus (bench/corpus) as TFRecord shards and as ArrayRecord shards, interleaved
round by round, each into a fresh directory, in this one process (the imports are paid once, before
the first round). Prints one JSON object: images/s of each format (best of `--rounds`), the ratio
ArrayRecord/TFRecord, and the bytes of each build's shards.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from corpus import make_corpus  # noqa: E402
from imagenet_tfrecords.build import BuildConfig, run_build  # noqa: E402
from imagenet_tfrecords.images.prepare import ImageOptions  # noqa: E402

FORMATS = ("tfrecord", "array_record")


def build_seconds(train: Path, output: Path, output_format: str, shards: int, workers: int, resize: bool) -> float:
    shutil.rmtree(output, ignore_errors=True)
    config = BuildConfig(output_dir=output, train_dir=train, train_shards=shards, num_workers=workers,
                         image=ImageOptions(resize=resize), output_format=output_format)
    started = time.perf_counter()
    run_build(config)
    return time.perf_counter() - started


def shard_bytes(output: Path) -> int:
    return sum(p.stat().st_size for p in output.iterdir() if "-of-" in p.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--resize", action="store_true", help="resize to 256x256 (default: copy the JPEGs)")
    parser.add_argument("--work_dir", type=Path, default=Path(tempfile.gettempdir()) / "bench-array-record")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # not the class-count warning of every build
    train = make_corpus(args.work_dir / "corpus", args.images)
    best = {fmt: float("inf") for fmt in FORMATS}
    sizes = {}
    build_seconds(train, args.work_dir / "warmup", "array_record", 1, 1, args.resize)  # imports, page cache
    for round_number in range(args.rounds):
        order = FORMATS if round_number % 2 == 0 else FORMATS[::-1]  # interleaved, alternating which goes first
        for fmt in order:
            output = args.work_dir / fmt
            best[fmt] = min(best[fmt], build_seconds(train, output, fmt, args.shards, args.workers, args.resize))
            sizes[fmt] = shard_bytes(output)
    rates = {fmt: args.images / seconds for fmt, seconds in best.items()}
    print(json.dumps({
        "images": args.images, "rounds": args.rounds, "shards": args.shards, "workers": args.workers,
        "mode": "resize 256x256" if args.resize else "copy",
        "images_per_s": {fmt: round(rate, 1) for fmt, rate in rates.items()},
        "shard_bytes": sizes,
        "array_record_vs_tfrecord": round(rates["array_record"] / rates["tfrecord"], 3),
    }, indent=1))


if __name__ == "__main__":
    main()
