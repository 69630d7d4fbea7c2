"""Resize geometry (stretch, shorter side, centre crop), the resampling presets, and box transforms
(crops and EXIF orientations)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import Enum
from types import ModuleType

import numpy as np
from PIL import Image

from ..inputs.labels import Box
from ..optional import require

Region = tuple[float, float, float, float]  # left, top, right, bottom, relative to the image
WHOLE: Region = (0.0, 0.0, 1.0, 1.0)


class ResizeMode(str, Enum):
    STRETCH = "stretch"  # exactly height x width, aspect not kept (the original NVIDIA scripts' behaviour)
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
    filter: str  # "linear", "supersample" (OpenCV) or "lanczos" (Pillow)
    fast_dct: bool = False  # libjpeg's fast integer IDCT
    fast_upsample: bool = False  # no "fancy" chroma upsampling: the image is shrunk afterwards anyway


# Chosen by measurement (bench/run.py, docs/performance.md "Resizing"): PSNR against a float Lanczos resize of
# the full decode, speed per core against TensorFlow's decode -> bilinear resize -> encode.
RESAMPLERS = {
    # bilinear (no antialiasing) after the DCT reduction: TensorFlow's quality or better, ~1.5x faster
    ResizeQuality.FAST: Resampler(dct_margin=1, filter="linear", fast_upsample=True),
    # bicubic to twice the output size, then an exact 2x2 average: antialiased, +1.3 dB, ~1.2x faster
    ResizeQuality.DEFAULT: Resampler(dct_margin=1, filter="supersample", fast_dct=True, fast_upsample=True),
    # Lanczos from at least twice the output size: within a few tenths of a dB of a float Lanczos
    ResizeQuality.BEST: Resampler(dct_margin=2, filter="lanczos"),
}


@dataclass(frozen=True)
class Geometry:
    """The image is resized to scaled_width x scaled_height, then the width x height window at
    (left, top) is kept: the whole image, or its centre on whole pixels of the scaled image."""

    scaled_width: int
    scaled_height: int
    left: int
    top: int
    width: int
    height: int

    @property
    def region(self) -> Region:
        """The kept part, relative to the image."""
        return (self.left / self.scaled_width, self.top / self.scaled_height,
                (self.left + self.width) / self.scaled_width, (self.top + self.height) / self.scaled_height)


def plan_geometry(width: int, height: int, mode: ResizeMode, target_width: int, target_height: int) -> Geometry:
    """How to resize a width x height image for `mode` and the target size."""
    if mode is ResizeMode.STRETCH:
        return Geometry(target_width, target_height, 0, 0, target_width, target_height)
    scale = max(target_width / width, target_height / height)
    scaled_width = max(target_width, round(width * scale))
    scaled_height = max(target_height, round(height * scale))
    if mode is ResizeMode.SHORTER_SIDE:
        return Geometry(scaled_width, scaled_height, 0, 0, scaled_width, scaled_height)
    return Geometry(scaled_width, scaled_height, (scaled_width - target_width) // 2,
                    (scaled_height - target_height) // 2, target_width, target_height)


@functools.cache
def _opencv() -> ModuleType:
    cv2 = require("cv2", "opencv-python-headless", "--resize_quality fast and default")
    cv2.setNumThreads(1)  # one worker process per core: no thread pools inside workers
    return cv2


def resample(pixels: np.ndarray, geometry: Geometry, resampler: Resampler) -> np.ndarray:
    """Resize (and crop) decoded pixels of the whole image to the geometry's output."""
    height, width = pixels.shape[:2]
    if resampler.filter == "lanczos":
        left, top, right, bottom = geometry.region
        box = (left * width, top * height, right * width, bottom * height)
        image = Image.fromarray(pixels).resize((geometry.width, geometry.height), Image.Resampling.LANCZOS, box=box)
        return np.asarray(image)
    scaled = (geometry.scaled_width, geometry.scaled_height)
    if (width, height) != scaled:
        cv2 = _opencv()
        if resampler.filter == "supersample":
            pixels = cv2.resize(pixels, (2 * scaled[0], 2 * scaled[1]), interpolation=cv2.INTER_CUBIC)
            pixels = cv2.resize(pixels, scaled, interpolation=cv2.INTER_AREA)
        else:
            pixels = cv2.resize(pixels, scaled, interpolation=cv2.INTER_LINEAR)
    return pixels[geometry.top : geometry.top + geometry.height, geometry.left : geometry.left + geometry.width]


# EXIF orientation -> how a relative point moves when the image is turned upright:
# (swap x and y, then mirror x, mirror y); the Exif 2.3 table, as Pillow's ImageOps.exif_transpose.
_ORIENTATIONS = {2: (False, True, False), 3: (False, True, True), 4: (False, False, True), 5: (True, False, False),
                 6: (True, True, False), 7: (True, True, True), 8: (True, False, True)}


def swaps_axes(orientation: int) -> bool:
    """Whether turning an image of this EXIF orientation upright swaps its width and height."""
    return _ORIENTATIONS.get(orientation, (False,))[0]


def orient_boxes(boxes: tuple[Box, ...], orientation: int) -> tuple[Box, ...]:
    """Relative boxes of an image turned upright by its EXIF orientation (1 or unknown: unchanged)."""
    if orientation not in _ORIENTATIONS:
        return boxes
    swap, mirror_x, mirror_y = _ORIENTATIONS[orientation]
    oriented = []
    for xmin, ymin, xmax, ymax in boxes:
        if swap:
            xmin, ymin, xmax, ymax = ymin, xmin, ymax, xmax
        if mirror_x:
            xmin, xmax = 1.0 - xmax, 1.0 - xmin
        if mirror_y:
            ymin, ymax = 1.0 - ymax, 1.0 - ymin
        oriented.append((xmin, ymin, xmax, ymax))
    return tuple(oriented)


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
