"""Turn the bytes of one image file into the RGB JPEG stored in a record.

The format is told from the bytes, never from the name. Without resizing, an ordinary
3-channel JPEG is stored as it is (its size read from the SOF marker, no decode); CMYK,
grayscale, PNG and other formats are decoded and re-encoded as RGB JPEG. With resizing,
every image is decoded (at a reduced DCT scale when it is much larger than the target),
resized with an antialiasing filter and re-encoded.
"""

from __future__ import annotations

import io
import struct
from dataclasses import asdict, dataclass
from enum import Enum

from PIL import Image

from .errors import BadImageError
from .labels import Box


class ResizeQuality(str, Enum):
    FAST = "fast"
    DEFAULT = "default"
    BEST = "best"


class ResizeMode(str, Enum):
    STRETCH = "stretch"  # exactly height x width, aspect not kept (the seed's behaviour)
    SHORTER_SIDE = "shorter_side"  # keep aspect; smallest size covering height x width
    CENTER_CROP = "center_crop"  # shorter_side, then the centre height x width


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


@dataclass(frozen=True)
class JpegHeader:
    sof_marker: int
    precision: int
    height: int
    width: int
    components: int


# Magic numbers of formats worth naming in an error or converting.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_STORABLE_SOF = (0xC0, 0xC1, 0xC2)  # baseline, extended, progressive Huffman: what every reader decodes
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD9)})
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_END = b"\xff\xd9"


def sniff_format(data: bytes) -> str | None:
    """The image format named by the file's first bytes, or None."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def read_jpeg_header(data: bytes) -> JpegHeader | None:
    """Parse the markers up to the frame header (SOF); None if there is none before the scan."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        (length,) = struct.unpack_from(">H", data, position + 2)
        if marker in _SOF_MARKERS:
            if position + 10 > len(data):
                return None
            precision, height, width, components = struct.unpack_from(">BHHB", data, position + 4)
            return JpegHeader(marker, precision, height, width, components)
        if marker == 0xDA:  # start of scan before any frame header
            return None
        position += 2 + length
    return None


def _is_plain_rgb_jpeg(header: JpegHeader | None) -> bool:
    return (
        header is not None
        and header.sof_marker in _STORABLE_SOF
        and header.precision == 8
        and header.components == 3
        and header.height > 0
        and header.width > 0
    )


def _decode(data: bytes, path: str, draft_size: tuple[int, int] | None = None) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", draft_size)
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadImageError(path, f"cannot decode the image ({exc})") from None
    return image


def _to_rgb(image: Image.Image, path: str) -> Image.Image:
    if image.mode == "RGB":
        return image
    try:
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            return background
        return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise BadImageError(path, f"cannot convert {image.mode} pixels to RGB ({exc})") from None


def _encode(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _scaled_size(width: int, height: int, options: ImageOptions) -> tuple[int, int]:
    """Size of the whole image after resizing (before any crop)."""
    if options.mode is ResizeMode.STRETCH:
        return options.width, options.height
    scale = max(options.width / width, options.height / height)
    return max(options.width, round(width * scale)), max(options.height, round(height * scale))


def _crop_region(scaled: tuple[int, int], options: ImageOptions) -> tuple[float, float, float, float]:
    """The kept part of the image, relative to it: (left, top, right, bottom) in [0, 1]."""
    if options.mode is not ResizeMode.CENTER_CROP:
        return (0.0, 0.0, 1.0, 1.0)
    scaled_width, scaled_height = scaled
    left = (scaled_width - options.width) / 2 / scaled_width
    top = (scaled_height - options.height) / 2 / scaled_height
    return (left, top, 1.0 - left, 1.0 - top)


def crop_boxes(boxes: tuple[Box, ...], region: tuple[float, float, float, float]) -> tuple[Box, ...]:
    """Re-express relative boxes in a cropped region; clamp to it and drop boxes left empty."""
    if region == (0.0, 0.0, 1.0, 1.0):
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


def _resized(data: bytes, path: str, header: JpegHeader | None, boxes: tuple[Box, ...], options: ImageOptions) -> StoredImage:
    draft_size = None
    if header is not None and header.width > 0 and header.height > 0:
        scaled = _scaled_size(header.width, header.height, options)
        # Let the JPEG decoder scale down by DCT, but stop at about twice the final size so
        # the antialiasing filter still has detail to work from.
        draft_size = (min(header.width, 2 * scaled[0]), min(header.height, 2 * scaled[1]))
    image = _to_rgb(_decode(data, path, draft_size), path)
    original_size = (header.width, header.height) if draft_size else image.size
    scaled = _scaled_size(*original_size, options)
    region = _crop_region(scaled, options)
    width, height = image.size
    source_box = (region[0] * width, region[1] * height, region[2] * width, region[3] * height)
    output_size = (options.width, options.height) if options.mode is not ResizeMode.SHORTER_SIDE else scaled
    image = image.resize(output_size, Image.Resampling.LANCZOS, box=source_box)
    return StoredImage(_encode(image, options.jpeg_quality), image.height, image.width, crop_boxes(boxes, region))


def _ends_cleanly(data: bytes) -> bool:
    return data.rstrip(b"\x00").endswith(_JPEG_END)


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
    if _is_plain_rgb_jpeg(header):
        if not _ends_cleanly(data):
            _decode(data, path)  # no end marker: keep the bytes only if they decode in full
        return StoredImage(data, header.height, header.width, boxes)
    image = _to_rgb(_decode(data, path), path)
    return StoredImage(_encode(image, options.jpeg_quality), image.height, image.width, boxes)
