#!/usr/bin/env python3
"""What a `--scheduler` build leaves in the Dask scheduler's memory, per image, extrapolated to ImageNet.

Builds synthetic ImageNet-shaped trains (the real synsets and their texts, a box for 42 % of the
images as in ImageNet, 1,250 images a shard as in ImageNet's 1024 shards; every image one small
JPEG with its number in a comment segment, so the build is quick) of two sizes, each on a fresh
local cluster (`dask scheduler` + two `dask worker` CLIs), and reads the scheduler's RSS before
and after each build. The slope between the two sizes is the memory kept per image; the
scheduler's own footprint is the smaller build's starting RSS. Prints one JSON object. Run from
the repository root:

    python bench/dask_scheduler.py --images 5000 25000
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from dask_cluster import dask_cluster  # noqa: E402

from imagenet_tfrecords.build import BuildConfig, run_build  # noqa: E402
from imagenet_tfrecords.inputs.labels import DEFAULT_LABELS_FILE  # noqa: E402

IMAGENET_IMAGES = 1_281_167 + 50_000
IMAGES_PER_SHARD = 1_250  # 1,281,167 / 1024
BOXED_FRACTION = 544_546 / 1_281_167
LIMIT_MIB = 150


def make_train(root: Path, images: int) -> tuple[Path, Path]:
    """root/train/<wnid>/<wnid>_<n>.JPEG over the 1000 synsets, and a bounding box CSV."""
    wnids = DEFAULT_LABELS_FILE.read_text().split()
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    photo = io.BytesIO()
    Image.fromarray(pixels).save(photo, "JPEG", quality=90)
    photo = photo.getvalue()
    train, boxes = root / "train", []
    for n in range(images):
        wnid = wnids[n % len(wnids)]
        name = f"{wnid}_{n}.JPEG"
        (train / wnid).mkdir(parents=True, exist_ok=True)
        comment = str(n).encode()  # files must differ: the scan refuses links to one file
        (train / wnid / name).write_bytes(photo[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
                                          + photo[2:])
        if (n * BOXED_FRACTION) % 1 + BOXED_FRACTION >= 1:  # spread evenly
            boxes.append(f"{name},0.1,0.2,0.8,0.9\n")
    box_file = root / "boxes.csv"
    box_file.write_text("".join(boxes))
    return train, box_file


def scheduler_rss(address: str) -> int:
    from distributed import Client

    def rss() -> int:
        import psutil

        return psutil.Process().memory_info().rss

    with Client(address, set_as_default=False) as client:
        return client.run_on_scheduler(rss)


def measure(images: int, work: Path) -> dict:
    train, box_file = make_train(work / f"data-{images}", images)
    with dask_cluster(work / f"cluster-{images}") as cluster:
        before = scheduler_rss(cluster.address)
        run_build(BuildConfig(output_dir=work / f"out-{images}", train_dir=train, bounding_box_file=box_file,
                              train_shards=max(images // IMAGES_PER_SHARD, 1), scheduler=cluster.address))
        after = scheduler_rss(cluster.address)
    return {"images": images, "scheduler_rss_before_mib": before / 2**20, "scheduler_rss_after_mib": after / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs=2, default=[5_000, 25_000], metavar=("SMALL", "LARGE"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as work:
        small, large = (measure(n, Path(work)) for n in sorted(args.images))
    per_image = (large["scheduler_rss_after_mib"] - small["scheduler_rss_after_mib"]) * 2**20 / (
        large["images"] - small["images"])
    imagenet = small["scheduler_rss_before_mib"] + per_image * IMAGENET_IMAGES / 2**20
    print(json.dumps({"runs": [small, large], "bytes_per_image": round(per_image, 1),
                      "imagenet_scheduler_mib": round(imagenet, 1), "limit_mib": LIMIT_MIB,
                      "within_limit": imagenet < LIMIT_MIB}, indent=2))


if __name__ == "__main__":
    main()
