"""Turn the bytes of one image file into the RGB JPEG stored in a record.

The format is told from the bytes, never from the name. Without resizing, an ordinary
3-channel JPEG is stored as it is (its size read from the SOF marker), once `acceptance` has
shown that TensorFlow's decode_jpeg reads it (unless --no_decode_check); CMYK, grayscale,
PNG and other formats are decoded and re-encoded as RGB JPEG. With resizing, every image is
decoded (reduced in the DCT when it is much larger than the output), resampled with the
chosen quality setting and re-encoded. Re-encoded images are in sRGB; every image is
checked against the pixel limit before it is decoded.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, replace

from PIL import ExifTags, Image

from ..errors import BadImageError
from ..inputs.labels import Box
from .acceptance import DEFAULT_MAX_PIXELS, jpeg_header_problem, stored_jpeg_problem
from .formats import JpegHeader, ends_cleanly, read_jpeg_header, sniff_format
from .pixels import Decoding, dct_scale, decode_rgb, encode_jpeg
from .resize import RESAMPLERS, ResizeMode, ResizeQuality, crop_boxes, orient_boxes, plan_geometry, resample, swaps_axes


@dataclass(frozen=True)
class ImageOptions:
    resize: bool = False
    height: int = 256
    width: int = 256
    mode: ResizeMode = ResizeMode.STRETCH
    jpeg_quality: int = 90  # of every re-encoded image
    resize_quality: ResizeQuality = ResizeQuality.DEFAULT
    decode_check: bool = True  # copy mode: store a JPEG as it is only once TensorFlow's rule accepts it
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are bad images, refused before decoding
    apply_exif_orientation: bool = False  # turn images upright by their EXIF tag (TensorFlow ignores it)

    def __post_init__(self) -> None:
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, was {self.jpeg_quality}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"height and width must be positive, were {self.height}x{self.width}")
        if self.max_pixels < 1:
            raise ValueError(f"the pixel limit must be positive, was {self.max_pixels}")

    def as_dict(self) -> dict[str, object]:
        fields = asdict(self)
        fields["mode"] = self.mode.value
        fields["resize_quality"] = self.resize_quality.value
        return fields


@dataclass(frozen=True)
class StoredImage:
    encoded: bytes
    height: int
    width: int
    boxes: tuple[Box, ...]


def _resized(data: bytes, path: str, header: JpegHeader | None, boxes: tuple[Box, ...], options: ImageOptions,
             decoding: Decoding, orientation: int) -> StoredImage:
    resampler = RESAMPLERS[options.resize_quality]
    decoding = replace(decoding, fast_dct=resampler.fast_dct, fast_upsample=resampler.fast_upsample)
    geometry = None
    if header is not None:
        width, height = (header.height, header.width) if swaps_axes(orientation) else (
            header.width, header.height)
        geometry = plan_geometry(width, height, options.mode, options.width, options.height)
        kept_width = (geometry.region[2] - geometry.region[0]) * width
        kept_height = (geometry.region[3] - geometry.region[1]) * height
        # Reduce in the DCT only while the kept part stays dct_margin times the output size.
        decoding = replace(decoding, scale=dct_scale(
            width, height,
            round(width * resampler.dct_margin * geometry.width / kept_width),
            round(height * resampler.dct_margin * geometry.height / kept_height),
        ))
    pixels = decode_rgb(data, path, header, decoding)
    if geometry is None:
        geometry = plan_geometry(pixels.shape[1], pixels.shape[0], options.mode, options.width, options.height)
    pixels = resample(pixels, geometry, resampler)
    return StoredImage(encode_jpeg(pixels, options.jpeg_quality), geometry.height, geometry.width,
                       crop_boxes(boxes, geometry.region))


def _orientation(data: bytes, header: JpegHeader | None, options: ImageOptions) -> int:
    """The EXIF orientation to apply: 1 (none) unless asked for and the file has one."""
    if not options.apply_exif_orientation or (header is not None and not header.exif):
        return 1
    try:
        with Image.open(io.BytesIO(data)) as image:
            return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # noqa: BLE001 - an unreadable tag is no orientation; the decode judges the file
        return 1


def _header(data: bytes, path: str, options: ImageOptions) -> JpegHeader | None:
    """The JPEG frame header (None for other formats); BadImageError for a JPEG that cannot be stored."""
    if not data:
        raise BadImageError(path, "the file is empty")
    image_format = sniff_format(data)
    if image_format is None:
        raise BadImageError(path, f"not an image file (it starts with {data[:8]!r})")
    if image_format != "JPEG":
        return None
    header = read_jpeg_header(data)
    if header is None:
        raise BadImageError(path, "JPEG without a frame header (truncated or corrupt)")
    problem = jpeg_header_problem(header, options.max_pixels)
    if problem:
        raise BadImageError(path, problem)
    return header


def _prepare(data: bytes, path: str, boxes: tuple[Box, ...], options: ImageOptions) -> StoredImage:
    header = _header(data, path, options)
    decoding = Decoding(options.max_pixels, apply_exif_orientation=options.apply_exif_orientation)
    orientation = _orientation(data, header, options)
    boxes = orient_boxes(boxes, orientation)
    if options.resize:
        return _resized(data, path, header, boxes, options, decoding, orientation)
    if header is not None and header.is_plain_rgb and orientation == 1:
        problem = stored_jpeg_problem(data, header, options.max_pixels, options.decode_check)
        if problem:
            raise BadImageError(path, problem)
        if not options.decode_check and not ends_cleanly(data):
            decode_rgb(data, path, header, decoding)  # no end marker: keep the bytes only if they decode in full
        return StoredImage(data, header.height, header.width, boxes)
    pixels = decode_rgb(data, path, header, decoding)
    return StoredImage(encode_jpeg(pixels, options.jpeg_quality), pixels.shape[0], pixels.shape[1], boxes)


def prepare_image(data: bytes, path: str, boxes: tuple[Box, ...], options: ImageOptions) -> StoredImage:
    """The RGB JPEG to store for one file. Raises BadImageError for anything not an image,
    over the pixel limit, or too large for the memory left (one image never ends the build)."""
    try:
        return _prepare(data, path, boxes, options)
    except MemoryError:
        raise BadImageError(path, "not enough memory to convert it; lower --max_pixels to refuse such "
                            "images up front, or use fewer --num_threads") from None
