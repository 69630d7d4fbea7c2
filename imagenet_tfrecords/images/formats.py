"""What an image file is, told from its bytes: format magic numbers and the JPEG frame header."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

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
_START_OF_SCAN = 0xDA
_ICC_SIGNATURE = b"ICC_PROFILE\x00"
_EXIF_SIGNATURE = b"Exif\x00\x00"


@dataclass(frozen=True)
class JpegHeader:
    sof_marker: int
    precision: int
    height: int
    width: int
    components: int  # 1 grayscale, 3 YCbCr (or RGB), 4 CMYK/YCCK
    icc_profile: bool = False  # an embedded colour profile (APP2 "ICC_PROFILE") before the frame header
    exif: bool = False  # an Exif block (APP1), which may carry an orientation

    @property
    def is_plain_rgb(self) -> bool:
        """An 8-bit, 3-component Huffman JPEG that every reader decodes as RGB: store it as it is."""
        return (
            self.sof_marker in _STORABLE_SOF
            and self.precision == 8
            and self.components == 3
            and self.height > 0
            and self.width > 0
        )


def sniff_format(data: bytes) -> str | None:
    """The image format named by the file's first bytes, or None."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, position, length) of each marker segment from the start of the file up to and
    including the first start of scan; it stops early where the markers are broken."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        (length,) = struct.unpack_from(">H", data, position + 2)
        yield marker, position, length
        if marker == _START_OF_SCAN:
            return
        position += 2 + length


def read_jpeg_header(data: bytes) -> JpegHeader | None:
    """Parse the markers up to the frame header (SOF); None if there is none before the scan."""
    icc_profile = exif = False
    for marker, position, _ in _segments(data):
        if marker in _SOF_MARKERS:
            if position + 10 > len(data):
                return None
            precision, height, width, components = struct.unpack_from(">BHHB", data, position + 4)
            return JpegHeader(marker, precision, height, width, components, icc_profile, exif)
        icc_profile = icc_profile or (marker == 0xE2 and data.startswith(_ICC_SIGNATURE, position + 4))
        exif = exif or (marker == 0xE1 and data.startswith(_EXIF_SIGNATURE, position + 4))
    return None


def scan_data_start(data: bytes) -> int | None:
    """Where the entropy-coded data of the first scan begins, or None if the markers before it are broken."""
    for marker, position, length in _segments(data):
        if marker == _START_OF_SCAN:
            return position + 2 + length if position + 2 + length <= len(data) else None
    return None


def ends_cleanly(data: bytes) -> bool:
    """The JPEG ends with its end-of-image marker (trailing zero padding allowed)."""
    end = len(data)
    while end and data[end - 1] == 0:  # without copying the image, as rstrip would
        end -= 1
    return data[end - 2 : end] == _JPEG_END
