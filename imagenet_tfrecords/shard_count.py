"""How many shards a split gets when none is asked for: the ImageNet defaults, fewer for small splits."""

from __future__ import annotations

IMAGENET_SHARDS = {"train": 1024, "validation": 128}  # the Inception build script's defaults
MIN_IMAGES_PER_SHARD = 100  # below this, a shard is more file than data (~100 resized images ≈ 10 MB)
SHARD_RULE = (f"at least {MIN_IMAGES_PER_SHARD} images a shard, at most {IMAGENET_SHARDS['train']} train and "
              f"{IMAGENET_SHARDS['validation']} validation shards (ImageNet's own counts)")


def fitted_shard_count(split: str, images: int) -> int:
    """One shard per MIN_IMAGES_PER_SHARD images (at least one), capped at the ImageNet default of the split.

    ImageNet itself (1,281,167 train, 50,000 validation images) gets exactly 1024 and 128 shards.
    """
    return max(1, min(IMAGENET_SHARDS[split], images // MIN_IMAGES_PER_SHARD))
