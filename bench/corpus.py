"""A deterministic ImageNet-like bench corpus, made offline from scikit-image's photos.

Sizes follow ImageNet: mostly 500x375 / 375x500 / 500x500, other sides in 300..500 px,
~2% small (< 200 px), ~5% large (longer side 1500..2500). A few grayscale, CMYK and
progressive JPEGs and one PNG named .JPEG. JPEG qualities 75..96 as in the wild.
"""

from __future__ import annotations

import random
from pathlib import Path

from imagenet_tfrecords.sample import SAMPLE_WNIDS, _load_photos, _save, make_photo

TYPICAL_SIZES = ((500, 375), (375, 500), (500, 500), (500, 333), (333, 500))


def _image_size(rng: random.Random) -> tuple[tuple[int, int], str]:
    roll = rng.random()
    if roll < 0.02:
        return (rng.randint(80, 199), rng.randint(80, 199)), "small"
    if roll < 0.07:
        longer = rng.randint(1500, 2500)
        shorter = int(longer * rng.uniform(0.6, 0.8))
        return ((longer, shorter) if rng.random() < 0.5 else (shorter, longer)), "large"
    if roll < 0.70:
        return rng.choice(TYPICAL_SIZES), "typical"
    return (rng.randint(300, 500), rng.randint(300, 500)), "other"


def _kind(index: int, rng: random.Random) -> str:
    if index == 7:
        return "png"
    roll = rng.random()
    if roll < 0.01:
        return "grayscale"
    if roll < 0.015:
        return "cmyk"
    if roll < 0.03:
        return "progressive"
    return "plain"


def make_corpus(root: Path, count: int, seed: int = 2012) -> Path:
    """Write `count` images as root/train/<wnid>/<wnid>_<n>.JPEG (reused when already complete)."""
    train = root / "train"
    done = root / f".complete-{count}-{seed}"
    if done.exists():
        return train
    rng = random.Random(seed)
    photos = _load_photos()
    for index in range(count):
        wnid = SAMPLE_WNIDS[index % len(SAMPLE_WNIDS)]
        (train / wnid).mkdir(parents=True, exist_ok=True)
        size, _ = _image_size(rng)
        kind = _kind(index, rng)
        _save(make_photo(photos, rng, size), train / wnid / f"{wnid}_{index}.JPEG", kind, rng)
    done.touch()
    return train


def replicate(train: Path, root: Path, count: int) -> Path:
    """A tree of `count` images made of hard links to `train`'s files under new names."""
    out = root / "train"
    files = sorted(train.glob("*/*.JPEG"))
    done = root / f".complete-{count}"
    if done.exists():
        return out
    for index in range(count):
        source = files[index % len(files)]
        wnid = source.parent.name
        (out / wnid).mkdir(parents=True, exist_ok=True)
        target = out / wnid / f"{wnid}_{index}.JPEG"
        if not target.exists():
            target.hardlink_to(source)
    done.touch()
    return out
