"""Turn the bytes of one image file into the RGB JPEG stored in a record.

The format is told from the bytes, never from the name. Without resizing, an ordinary
3-channel JPEG is stored as it is (its size read from the SOF marker, no decode); CMYK,
grayscale, PNG and other formats are decoded and re-encoded as RGB JPEG. With resizing,
every image is decoded (reduced in the DCT when it is much larger than the output),
resampled with the chosen quality setting and re-encoded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import BadImageError
from .formats import JpegHeader, ends_cleanly, read_jpeg_header, sniff_format
from .labels import Box
from .pixels import dct_scale, decode_rgb, encode_jpeg
from .resize import RESAMPLERS, ResizeMode, ResizeQuality, crop_boxes, plan_geometry, resample


@dataclass(frozen=True)
class ImageOptions:
    resize: bool = False
    height: int = 256
    width: int = 256
    mode: ResizeMode = ResizeMode.STRETCH
    jpeg_quality: int = 90  # of every re-encoded image
    resize_quality: ResizeQuality = ResizeQuality.DEFAULT

    def __post_init__(self) -> None:
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, was {self.jpeg_quality}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"height and width must be positive, were {self.height}x{self.width}")

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


def _resized(data: bytes, path: str, header: JpegHeader | None, boxes: tuple[Box, ...], options: ImageOptions) -> StoredImage:
    resampler = RESAMPLERS[options.resize_quality]
    scale = 1
    if header is not None and header.width > 0 and header.height > 0:
        geometry = plan_geometry(header.width, header.height, options.mode, options.width, options.height)
        kept_width = (geometry.region[2] - geometry.region[0]) * header.width
        kept_height = (geometry.region[3] - geometry.region[1]) * header.height
        # Reduce in the DCT only while the kept part stays dct_margin times the output size.
        scale = dct_scale(
            header.width, header.height,
            round(header.width * resampler.dct_margin * geometry.width / kept_width),
            round(header.height * resampler.dct_margin * geometry.height / kept_height),
        )
    pixels = decode_rgb(data, path, header, scale, resampler.fast_dct, resampler.fast_upsample)
    if header is None or header.width <= 0 or header.height <= 0:
        geometry = plan_geometry(pixels.shape[1], pixels.shape[0], options.mode, options.width, options.height)
    pixels = resample(pixels, geometry, resampler)
    return StoredImage(encode_jpeg(pixels, options.jpeg_quality), geometry.height, geometry.width,
                       crop_boxes(boxes, geometry.region))


def prepare_image(data: bytes, path: str, boxes: tuple[Box, ...], options: ImageOptions) -> StoredImage:
    """The RGB JPEG to store for one file. Raises BadImageError for anything not an image."""
    if not data:
        raise BadImageError(path, "the file is empty")
    image_format = sniff_format(data)
    if image_format is None:
        raise BadImageError(path, f"not an image file (it starts with {data[:8]!r})")
    header = read_jpeg_header(data) if image_format == "JPEG" else None
    if image_format == "JPEG" and header is None:
        raise BadImageError(path, "JPEG without a frame header (truncated or corrupt)")
    if options.resize:
        return _resized(data, path, header, boxes, options)
    if header is not None and header.is_plain_rgb:
        if not ends_cleanly(data):
            decode_rgb(data, path, header)  # no end marker: keep the bytes only if they decode in full
        return StoredImage(data, header.height, header.width, boxes)
    pixels = decode_rgb(data, path, header)
    return StoredImage(encode_jpeg(pixels, options.jpeg_quality), pixels.shape[0], pixels.shape[1], boxes)
