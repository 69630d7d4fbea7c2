"""Resize geometry (stretch, shorter side, centre crop), the resampling presets, and box transforms."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np
from PIL import Image

from .labels import Box

cv2.setNumThreads(1)  # one worker process per core: no thread pools inside workers

Region = tuple[float, float, float, float]  # left, top, right, bottom, relative to the image
WHOLE: Region = (0.0, 0.0, 1.0, 1.0)


class ResizeMode(str, Enum):
    STRETCH = "stretch"  # exactly height x width, aspect not kept (the seed's behaviour)
    SHORTER_SIDE = "shorter_side"  # keep aspect; smallest size covering height x width
    CENTER_CROP = "center_crop"  # shorter_side, then the centre height x width


class ResizeQuality(str, Enum):
    FAST = "fast"
    DEFAULT = "default"
    BEST = "best"


@dataclass(frozen=True)
class Resampler:
    """How one quality setting resizes: how far the DCT may shrink first, then which filter."""

    dct_margin: int  # keep the DCT-reduced image at least this many times the output size
    filter: str  # "linear" / "area" (OpenCV) or "lanczos" (Pillow)


RESAMPLERS = {
    ResizeQuality.FAST: Resampler(dct_margin=1, filter="linear"),
    ResizeQuality.DEFAULT: Resampler(dct_margin=1, filter="area"),
    ResizeQuality.BEST: Resampler(dct_margin=2, filter="lanczos"),
}
_OPENCV_FILTERS = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}


@dataclass(frozen=True)
class Geometry:
    """Where the output comes from (a region of the source) and its size in pixels."""

    region: Region
    width: int
    height: int


def plan_geometry(width: int, height: int, mode: ResizeMode, target_width: int, target_height: int) -> Geometry:
    """The region of a width x height image to keep and the size to resize it to."""
    if mode is ResizeMode.STRETCH:
        return Geometry(WHOLE, target_width, target_height)
    scale = max(target_width / width, target_height / height)
    scaled_width = max(target_width, round(width * scale))
    scaled_height = max(target_height, round(height * scale))
    if mode is ResizeMode.SHORTER_SIDE:
        return Geometry(WHOLE, scaled_width, scaled_height)
    left = (scaled_width - target_width) / 2 / scaled_width
    top = (scaled_height - target_height) / 2 / scaled_height
    return Geometry((left, top, 1.0 - left, 1.0 - top), target_width, target_height)


def crop_pixels(pixels: np.ndarray, region: Region) -> tuple[np.ndarray, Region]:
    """Cut the centred `region` out on whole pixels; returns the crop and the region it really covers."""
    if region == WHOLE:
        return pixels, WHOLE
    height, width = pixels.shape[:2]
    kept_width = max(1, round((region[2] - region[0]) * width))
    kept_height = max(1, round((region[3] - region[1]) * height))
    left, top = (width - kept_width) // 2, (height - kept_height) // 2
    return (
        pixels[top : top + kept_height, left : left + kept_width],
        (left / width, top / height, (left + kept_width) / width, (top + kept_height) / height),
    )


def resample(pixels: np.ndarray, width: int, height: int, resampler: Resampler) -> np.ndarray:
    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    if resampler.filter == "lanczos":
        return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.LANCZOS))
    return cv2.resize(pixels, (width, height), interpolation=_OPENCV_FILTERS[resampler.filter])


def crop_boxes(boxes: tuple[Box, ...], region: Region) -> tuple[Box, ...]:
    """Re-express relative boxes in a cropped region; clamp to it and drop boxes left empty."""
    if region == WHOLE:
        return boxes
    left, top, right, bottom = region
    width, height = right - left, bottom - top
    kept = []
    for xmin, ymin, xmax, ymax in boxes:
        new = (
            min(max((xmin - left) / width, 0.0), 1.0),
            min(max((ymin - top) / height, 0.0), 1.0),
            min(max((xmax - left) / width, 0.0), 1.0),
            min(max((ymax - top) / height, 0.0), 1.0),
        )
        if new[0] < new[2] and new[1] < new[3]:
            kept.append(new)
    return tuple(kept)
