"""How many shards a split gets when none is asked for: the ImageNet defaults, fewer for small splits,
more for larger ones (ImageNet-21k)."""

from __future__ import annotations

IMAGENET_SHARDS = {"train": 1024, "validation": 128}  # the Inception build script's defaults
IMAGENET_IMAGES = {"train": 1_281_167, "validation": 50_000}  # ILSVRC-2012, devkit readme
# ImageNet's own shard size, kept beyond its size: 1,252 train and 391 validation images a shard.
IMAGES_PER_LARGE_SHARD = {split: -(-IMAGENET_IMAGES[split] // shards) for split, shards in IMAGENET_SHARDS.items()}
MIN_IMAGES_PER_SHARD = 100  # below this, a shard is more file than data (~100 resized images ≈ 10 MB)
SHARD_RULE = (f"one shard per {MIN_IMAGES_PER_SHARD} images up to {IMAGENET_SHARDS['train']} train and "
              f"{IMAGENET_SHARDS['validation']} validation shards (ImageNet's own counts), then one per "
              f"{IMAGES_PER_LARGE_SHARD['train']:,} train or {IMAGES_PER_LARGE_SHARD['validation']} validation "
              "images (ImageNet's shard size)")


def fitted_shard_count(split: str, images: int) -> int:
    """One shard per MIN_IMAGES_PER_SHARD images (at least one), up to the ImageNet default of the split;
    a split larger than that gets one shard per IMAGES_PER_LARGE_SHARD images instead, so its shards stay
    ImageNet-sized.

    ImageNet itself (1,281,167 train, 50,000 validation images) gets exactly 1024 and 128 shards, and every
    smaller split what it got before this rule grew; ImageNet-21k (fall11, 14,197,122 images) gets 11,339.
    """
    cap = max(IMAGENET_SHARDS[split], images // IMAGES_PER_LARGE_SHARD[split])
    return max(1, min(cap, images // MIN_IMAGES_PER_SHARD))
