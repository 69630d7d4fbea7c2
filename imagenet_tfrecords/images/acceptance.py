"""What makes an image bad: the one rule the build and `--verify --deep` share.

Two checks. The pixel limit: an image of more than `max_pixels` pixels (by its header,
before anything is decoded) is bad, like a corrupt one. TensorFlow's rule for a JPEG stored
as it is: what `tf.io.decode_jpeg` rejects is bad; what it decodes with only a libjpeg
warning (e.g. "N extraneous bytes before marker", found in some real ImageNet files) is kept.
An ordinary baseline JPEG is proved from its markers and a decode of its headers (about a
quarter of a millisecond); any other JPEG by libjpeg's whole entropy decoder, reduced 8x in
the DCT. tests/test_image_edges.py holds both to TensorFlow's verdict on hostile files.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import simplejpeg
from PIL import Image

from .formats import JpegHeader, scan_data_start

# Pillow's own decompression-bomb threshold: 256 MiB as 8-bit RGB, so a worker's worst decode
# stays well under a GiB; about 470 times a typical ImageNet photo (500 x 375).
DEFAULT_MAX_PIXELS = 89_478_485
# tf.io.decode_jpeg refuses any image of 2**29 bytes or more once decoded (RGB: 3 bytes a pixel).
TENSORFLOW_MAX_PIXELS = (2**29 - 1) // 3
# A reserved marker libjpeg always stops on (a fatal "Unsupported marker type 0x02"), repeated past
# the longest marker segment (65535 bytes) so no segment length can skip over all of it.
_END_OF_DATA_FENCE = b"\xff\x02" * 32769
_BASELINE = (0xC0, 0xC1)  # one scan, Huffman-coded
_RESTARTS = bytes(range(0xD0, 0xD8))
_END_OF_IMAGE = 0xD9
_END = b"\xff\xd9"


def size_problem(width: int, height: int, max_pixels: int) -> str | None:
    """Why a width x height image is refused before it is decoded, or None."""
    if width < 1 or height < 1:
        return f"the header gives a size of {width}x{height}"
    if width * height > max_pixels:
        return (f"{width}x{height} is {width * height:,} pixels, over the limit of {max_pixels:,} "
                f"(raise it with --max_pixels if this image is genuine)")
    return None


def jpeg_header_problem(header: JpegHeader, max_pixels: int) -> str | None:
    """Why a JPEG is refused from its frame header alone (sample precision, pixel limit), or None."""
    if header.precision != 8:
        return (f"a {header.precision}-bit JPEG: TensorFlow's decode_jpeg reads only 8-bit JPEGs, and neither "
                "it nor this builder can convert it; convert it to an 8-bit JPEG or PNG with a tool that reads "
                "12-bit JPEGs (e.g. libjpeg-turbo 3's djpeg)")
    return size_problem(header.width, header.height, max_pixels)


def stored_jpeg_problem(data: bytes, header: JpegHeader, max_pixels: int, decode: bool = True) -> str | None:
    """Why a JPEG cannot be stored (or, in a shard, is not fit) as it is, or None: its header,
    TensorFlow's size limit, and (with `decode`) whether tf.io.decode_jpeg decodes it."""
    width, height = header.width, header.height
    problem = jpeg_header_problem(header, max_pixels)
    if problem is None and width * height > TENSORFLOW_MAX_PIXELS:
        problem = (f"{width}x{height} is too large for TensorFlow's decode_jpeg (at most "
                   f"{TENSORFLOW_MAX_PIXELS:,} pixels); build with --resize_images")
    return problem or (tensorflow_jpeg_problem(data, header) if decode else None)


def _libjpeg_fails(data: bytes, width: int, height: int) -> Exception | None:
    """The error Pillow's libjpeg raises decoding `data` reduced 8x (warnings ignored), or None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.decodermaxblock = len(data)  # all of it at once: Pillow stops quietly at a block's end
            image.draft("L", (-(-width // 8), -(-height // 8)))
            image.load()
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise many types on hostile bytes
        return exc
    return None


def _markers_in_scan(data: bytes, start: int) -> Iterator[int]:
    """The markers in entropy-coded data from `start`, as libjpeg's decoder finds them:
    0xFF 0x00 is a data byte 0xFF, and any 0xFF before a marker is fill."""
    position = data.find(b"\xff", start)
    while position != -1:
        while position < len(data) and data[position] == 0xFF:
            position += 1
        if position == len(data):
            return
        if data[position]:
            yield data[position]
        position = data.find(b"\xff", position + 1)


def _only_restarts_then_end(data: bytes, start: int) -> bool:
    """The scan from `start` holds no marker but restart markers, in order, up to an end marker."""
    end = len(data) - 2
    if data.endswith(_END) and data.count(b"\xff", start, end) == data.count(b"\xff\x00", start, end):
        return True  # the common case, counted at C speed: every 0xFF in the scan is a data byte
    expected = 0
    for marker in _markers_in_scan(data, start):
        if marker == _END_OF_IMAGE:
            return True
        if marker != _RESTARTS[expected]:
            return False
        expected = (expected + 1) % 8
    return False


def _intact_baseline(data: bytes, header_marker: int) -> bool:
    """A baseline JPEG whose only scan runs to the end marker with only restart markers, in order,
    on the way, and whose tables set up without error: TensorFlow decodes it (the common case).

    Why that is enough: libjpeg's Huffman decoder never fails, it only warns (and fills in zeros);
    its errors come from the markers it reads, from setting up the scan's tables, and from running
    out of data. With those markers libjpeg reads nothing that can fail and finds the end marker
    before the data ends; the tables are set up by a decode of the headers with no scan data.
    """
    start = scan_data_start(data) if header_marker in _BASELINE else None
    return (start is not None and _only_restarts_then_end(data, start)
            and _libjpeg_fails(data[:start] + _END, 8, 8) is None)


def tensorflow_jpeg_problem(data: bytes, header: JpegHeader) -> str | None:
    """Why tf.io.decode_jpeg would fail on this JPEG, or None. Proved from the markers for an
    intact baseline JPEG; otherwise by running the whole entropy decoder, reduced 8x in the DCT,
    at a fraction of the cost of a full decode."""
    if _intact_baseline(data, header.sof_marker):
        return None
    try:  # no warning and no error: TensorFlow decodes it too
        simplejpeg.decode_jpeg(data, colorspace="GRAY", min_height=1, min_width=1, min_factor=8, strict=True)
        return None
    except ValueError:
        pass  # a warning TensorFlow may ignore, or an error: decide as TensorFlow does, below
    # simplejpeg cannot say "warnings only": strict stops at the first warning, lenient also
    # ignores errors that follow one. Pillow's libjpeg ignores warnings and fails on errors and
    # on running out of data, as TensorFlow does, except that it stops quietly where data runs out
    # after the last row (TensorFlow reads on to the end marker and fails). The fence after the
    # data turns that into an error too; a file that ends properly is never read into the fence.
    error = _libjpeg_fails(data + _END_OF_DATA_FENCE, header.width, header.height)
    return f"corrupt or truncated JPEG data: TensorFlow's decode_jpeg fails on it ({error})" if error else None
