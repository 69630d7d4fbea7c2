"""Decode any image file to RGB pixels (a numpy array) and encode RGB pixels as JPEG.

JPEGs go through libjpeg-turbo via simplejpeg, optionally scaled down by a power of two in
the DCT (much faster than a full decode). libjpeg's other scales (3/8, 3/4, ...) measured
slower here and worse after resizing. A scaled decode is ceil(size / scale) pixels: resizing
it as if it covered the whole image is off by under one decoded pixel. CMYK/YCCK JPEGs, other
formats and JPEGs simplejpeg refuses go through Pillow.
"""

from __future__ import annotations

import io
import math

import numpy as np
import simplejpeg
from PIL import Image

from .errors import BadImageError
from .formats import JpegHeader

DCT_SCALES = (1, 2, 4, 8)  # the power-of-two reductions libjpeg does in the DCT


def dct_scale(width: int, height: int, min_width: int, min_height: int) -> int:
    """The largest power-of-two reduction that keeps the image at least min_width x min_height."""
    scale = 1
    for candidate in DCT_SCALES[1:]:
        if math.ceil(width / candidate) >= min_width and math.ceil(height / candidate) >= min_height:
            scale = candidate
    return scale


def _pillow_rgb(data: bytes, path: str, scale: int) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(data))
        if scale > 1 and image.format == "JPEG":
            image.draft(image.mode, (math.ceil(image.width / scale), math.ceil(image.height / scale)))
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadImageError(path, f"cannot decode the image ({exc})") from None
    try:
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, (255, 255, 255))
            image.paste(rgba, mask=rgba.getchannel("A"))
        image = image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise BadImageError(path, f"cannot convert its {image.mode} pixels to RGB ({exc})") from None
    return np.asarray(image)


def decode_rgb(data: bytes, path: str, header: JpegHeader | None, scale: int = 1,
               fast_dct: bool = False, fast_upsample: bool = False) -> np.ndarray:
    """H x W x 3 uint8 RGB pixels, reduced by `scale` (a DCT_SCALES value) for JPEGs.

    A truncated or corrupt file raises BadImageError naming `path`.
    """
    if header is not None and header.components in (1, 3):
        try:
            return simplejpeg.decode_jpeg(
                data, colorspace="RGB", fastdct=fast_dct, fastupsample=fast_upsample,
                min_height=math.ceil(header.height / scale), min_width=math.ceil(header.width / scale),
            )
        except ValueError:
            pass  # libjpeg complained (possibly only a warning): Pillow decides below
    return _pillow_rgb(data, path, scale)


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG, 4:2:0 chroma (as TensorFlow's and Pillow's encoders default to)."""
    return simplejpeg.encode_jpeg(
        np.ascontiguousarray(pixels), quality=quality, colorspace="RGB", colorsubsampling="420", fastdct=False
    )
