"""Decode any image file to 8-bit sRGB pixels (a numpy array) and encode RGB pixels as JPEG.

JPEGs go through libjpeg-turbo via simplejpeg, optionally scaled down by a power of two in
the DCT (much faster than a full decode). libjpeg's other scales (3/8, 3/4, ...) measured
slower here and worse after resizing. A scaled decode is ceil(size / scale) pixels: resizing
it as if it covered the whole image is off by under one decoded pixel. JPEGs with a colour
profile (or an orientation to apply), CMYK/YCCK JPEGs, other formats and JPEGs simplejpeg
refuses go through Pillow; TIFFs of 32-bit or floating-point samples through tifffile.
Every image is checked against the pixel limit from its header before it is decoded.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import ExifTags, Image, ImageCms, ImageOps

from ..errors import BadImageError, UserError
from ..optional import require
from .acceptance import size_problem
from .formats import JpegHeader

DCT_SCALES = (1, 2, 4, 8)  # the power-of-two reductions libjpeg does in the DCT
Image.MAX_IMAGE_PIXELS = None  # one limit for every format: size_problem, checked before decoding
_SRGB = ImageCms.createProfile("sRGB")
_WIDE_MODES = ("I", "F")  # 32-bit integer or float samples: Pillow reads RGB or unsigned ones wrongly
_TIFF_ORIENTATION, _TIFF_ICC_PROFILE = 274, 34675  # TIFF tag numbers


@dataclass(frozen=True)
class Decoding:
    """How to decode: the pixel limit, the DCT reduction and libjpeg speed-ups, the EXIF rule."""

    max_pixels: int
    scale: int = 1  # a DCT_SCALES value, for JPEGs
    fast_dct: bool = False
    fast_upsample: bool = False
    apply_exif_orientation: bool = False


def dct_scale(width: int, height: int, min_width: int, min_height: int) -> int:
    """The largest power-of-two reduction that keeps the image at least min_width x min_height."""
    scale = 1
    for candidate in DCT_SCALES[1:]:
        if math.ceil(width / candidate) >= min_width and math.ceil(height / candidate) >= min_height:
            scale = candidate
    return scale


def _check_size(path: str, width: int, height: int, max_pixels: int) -> None:
    problem = size_problem(width, height, max_pixels)
    if problem:
        raise BadImageError(path, problem)


def to_8bit(samples: np.ndarray) -> np.ndarray:
    """uint8 samples from any integer or float samples, over the type's full range (floats: 0..1).

    Pillow's convert("RGB") clips 16- and 32-bit values at 255 instead, which turns them near-white.
    """
    if samples.dtype == np.uint8:
        return samples
    if samples.dtype.kind == "f":
        scaled = np.clip(np.nan_to_num(samples.astype(np.float64)), 0.0, 1.0) * 255.0
    else:
        scaled = np.clip(samples.astype(np.float64), 0, None) * (255.0 / np.iinfo(samples.dtype).max)
    return np.round(scaled).astype(np.uint8)


def _image_from_samples(samples: np.ndarray) -> Image.Image:
    """An L, LA, RGB or RGBA image from samples of any depth: H x W, or H x W x 1..4 channels."""
    samples = to_8bit(samples)
    if samples.ndim == 3 and samples.shape[2] == 1:
        samples = samples[:, :, 0]
    if not (samples.ndim == 2 or (samples.ndim == 3 and 2 <= samples.shape[2] <= 4)):
        raise ValueError(f"samples of shape {samples.shape}, not gray, gray+alpha, RGB or RGBA")
    return Image.fromarray(np.ascontiguousarray(samples))


def _tiff_samples(data: bytes, path: str, max_pixels: int) -> tuple[Image.Image, bytes | None]:
    """tifffile's 8-bit pixels of the first page (its orientation kept for exif_transpose), and its profile."""
    tifffile = require("tifffile", "tifffile", "TIFF images of 32-bit or floating-point samples")
    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        page = tiff.pages[0]
        _check_size(path, page.imagewidth, page.imagelength, max_pixels)
        image = _image_from_samples(page.asarray())
        orientation, profile = page.tags.get(_TIFF_ORIENTATION), page.tags.get(_TIFF_ICC_PROFILE)
    if orientation is not None:
        image.getexif()[ExifTags.Base.Orientation] = int(orientation.value)
    return image, bytes(profile.value) if profile is not None else None


def _open_pillow(data: bytes, path: str, decoding: Decoding) -> tuple[Image.Image, bytes | None]:
    """Pillow's pixels (reduced in the DCT for JPEGs) and the embedded colour profile."""
    image = Image.open(io.BytesIO(data))
    _check_size(path, image.width, image.height, decoding.max_pixels)
    if image.format == "TIFF" and image.mode in _WIDE_MODES:
        image, profile = _tiff_samples(data, path, decoding.max_pixels)
    else:
        if decoding.scale > 1 and image.format == "JPEG":
            image.draft(image.mode, (math.ceil(image.width / decoding.scale),
                                     math.ceil(image.height / decoding.scale)))
        image.load()
        profile = image.info.get("icc_profile")
    return image, profile


def _decode_with_pillow(data: bytes, path: str, decoding: Decoding) -> tuple[Image.Image, bytes | None]:
    """Pillow's (or for TIFF, tifffile's) pixels and profile; BadImageError for a file neither can read."""
    try:
        image, profile = _open_pillow(data, path, decoding)
    except (UserError, MemoryError):  # a BadImageError, or a missing tifffile
        raise
    except Image.UnidentifiedImageError:
        if not data.startswith((b"II*\x00", b"MM\x00*")):
            raise BadImageError(path, "a kind of image file that cannot be read (an unusual variant of its "
                                "format, or corrupt); convert it to an 8-bit JPEG or PNG") from None
        image, profile = _tiff_with_tifffile(data, path, decoding)  # e.g. floating-point RGB samples
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise many types on hostile bytes
        raise BadImageError(path, f"cannot decode the image ({exc})") from None
    if decoding.apply_exif_orientation:
        image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16") or image.mode in _WIDE_MODES:
        image = _image_from_samples(np.asarray(image))
    return image, profile


def _tiff_with_tifffile(data: bytes, path: str, decoding: Decoding) -> tuple[Image.Image, bytes | None]:
    try:
        return _tiff_samples(data, path, decoding.max_pixels)
    except (UserError, MemoryError):  # a BadImageError, or a missing tifffile
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types on hostile bytes
        raise BadImageError(path, f"cannot decode the TIFF image ({exc})") from None


def _opaque(image: Image.Image) -> Image.Image:
    """The image without transparency: composited on white (RGB), or as it was."""
    if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
        return image
    rgba = image.convert("RGBA")
    opaque = Image.new("RGB", rgba.size, (255, 255, 255))
    opaque.paste(rgba, mask=rgba.getchannel("A"))
    return opaque


@functools.lru_cache(maxsize=32)
def _to_srgb(profile: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The transform from an embedded profile to sRGB; None for a profile that cannot be used."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        return ImageCms.buildTransform(source, _SRGB, mode, "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None  # unreadable or for another colour space: ignored, as TensorFlow ignores every profile


def _in_srgb(image: Image.Image, profile: bytes | None, path: str) -> Image.Image:
    """Opaque RGB pixels in sRGB: converted through the embedded profile when there is one."""
    try:
        image = _opaque(image)
        transform = _to_srgb(profile, image.mode) if profile and image.mode in ("RGB", "L", "CMYK") else None
        if transform is not None:
            try:
                return ImageCms.applyTransform(image, transform)
            except (ImageCms.PyCMSError, ValueError):
                pass  # a profile that does not fit these pixels: ignored, as above
        return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise BadImageError(path, f"cannot convert its {image.mode} pixels to RGB ({exc})") from None


def decode_rgb(data: bytes, path: str, header: JpegHeader | None, decoding: Decoding) -> np.ndarray:
    """H x W x 3 uint8 sRGB pixels, reduced by `decoding.scale` for JPEGs (whose header the
    caller has checked against the pixel limit).

    A truncated or corrupt file, or one over the pixel limit, raises BadImageError naming `path`.
    """
    if header is not None:
        plain = header.components in (1, 3) and not header.icc_profile
        if plain and not (decoding.apply_exif_orientation and header.exif):
            try:
                return simplejpeg.decode_jpeg(
                    data, colorspace="RGB", fastdct=decoding.fast_dct, fastupsample=decoding.fast_upsample,
                    min_height=math.ceil(header.height / decoding.scale),
                    min_width=math.ceil(header.width / decoding.scale),
                )
            except ValueError:
                pass  # libjpeg complained (possibly only a warning): Pillow decides below
    image, profile = _decode_with_pillow(data, path, decoding)
    return np.asarray(_in_srgb(image, profile, path))


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG, 4:2:0 chroma (as TensorFlow's and Pillow's encoders default to)."""
    return simplejpeg.encode_jpeg(
        np.ascontiguousarray(pixels), quality=quality, colorspace="RGB", colorsubsampling="420", fastdct=False
    )
