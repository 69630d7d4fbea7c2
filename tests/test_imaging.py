"""Format detection from bytes, header parsing, colour fixes, resizing and box transforms."""

from __future__ import annotations

import io
import math
import random

import pytest
from PIL import Image

from imagenet_tfrecords.errors import BadImageError
from imagenet_tfrecords.images.formats import read_jpeg_header, sniff_format
from imagenet_tfrecords.images.prepare import ImageOptions, prepare_image
from imagenet_tfrecords.images.pixels import dct_scale
from imagenet_tfrecords.images.resize import ResizeMode, ResizeQuality, crop_boxes
from imagenet_tfrecords.sample import _load_photos, make_photo

BOX = ((0.1, 0.2, 0.6, 0.9),)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return make_photo(_load_photos(), random.Random(3), (500, 375))


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_sniffing_uses_bytes_not_names(photo: Image.Image) -> None:
    assert sniff_format(encode(photo)) == "JPEG"
    assert sniff_format(encode(photo, "PNG")) == "PNG"
    assert sniff_format(b"<!DOCTYPE html>") is None
    assert sniff_format(b"") is None


@pytest.mark.parametrize("mode,components", [("RGB", 3), ("L", 1), ("CMYK", 4)])
def test_header_reports_size_and_components(photo: Image.Image, mode: str, components: int) -> None:
    header = read_jpeg_header(encode(photo.convert(mode)))
    assert (header.width, header.height, header.components, header.sof_marker) == (500, 375, components, 0xC0)
    assert read_jpeg_header(encode(photo, progressive=True)).sof_marker == 0xC2


def test_plain_jpeg_is_stored_as_is_without_resizing(photo: Image.Image) -> None:
    data = encode(photo, quality=95)
    stored = prepare_image(data, "x.JPEG", BOX, ImageOptions())
    assert (stored.encoded, stored.width, stored.height, stored.boxes) == (data, 500, 375, BOX)


@pytest.mark.parametrize("mode", ["CMYK", "L", "PNG", "RGBA-PNG"])
def test_other_formats_become_three_channel_jpeg(photo: Image.Image, mode: str) -> None:
    if mode == "PNG":
        data = encode(photo, "PNG")
    elif mode == "RGBA-PNG":
        data = encode(photo.convert("RGBA"), "PNG")
    else:
        data = encode(photo.convert(mode), quality=95)
    stored = prepare_image(data, "x.JPEG", BOX, ImageOptions(jpeg_quality=90))
    header = read_jpeg_header(stored.encoded)
    assert header.components == 3 and (stored.width, stored.height) == (500, 375)
    assert Image.open(io.BytesIO(stored.encoded)).mode == "RGB"


def test_cmyk_colours_are_right() -> None:
    magenta = Image.new("CMYK", (64, 64), (0, 255, 0, 0))
    stored = prepare_image(encode(magenta, quality=100), "m.JPEG", (), ImageOptions(jpeg_quality=100))
    red, green, blue = Image.open(io.BytesIO(stored.encoded)).getpixel((32, 32))
    assert red > 240 and green < 15 and blue > 240


@pytest.mark.parametrize(
    "mode,size,expected",
    [(ResizeMode.STRETCH, (256, 256), (256, 256)), (ResizeMode.SHORTER_SIDE, (256, 256), (341, 256)),
     (ResizeMode.CENTER_CROP, (256, 256), (256, 256)), (ResizeMode.CENTER_CROP, (200, 100), (100, 200))],
)
def test_resize_modes(photo: Image.Image, mode: ResizeMode, size: tuple[int, int], expected: tuple[int, int]) -> None:
    options = ImageOptions(resize=True, height=size[0], width=size[1], mode=mode)
    stored = prepare_image(encode(photo), "x.JPEG", BOX, options)
    assert (stored.width, stored.height) == expected == Image.open(io.BytesIO(stored.encoded)).size


def test_dct_scale_is_a_power_of_two_that_keeps_the_minimum_size() -> None:
    assert dct_scale(500, 375, 256, 256) == 1
    assert dct_scale(2000, 1500, 256, 256) == 4
    assert dct_scale(2000, 1500, 512, 512) == 2
    assert dct_scale(4000, 3000, 256, 256) == 8


def psnr(stored: Image.Image, reference: Image.Image) -> float:
    error = sum((a - b) ** 2 for a, b in zip(stored.tobytes(), reference.tobytes())) / len(reference.tobytes())
    return 10 * math.log10(255**2 / error)


@pytest.mark.parametrize("quality,minimum", [("fast", 27.0), ("default", 29.0), ("best", 31.0)])
def test_quality_settings_on_a_large_image(photo: Image.Image, quality: str, minimum: float) -> None:
    large = photo.resize((2000, 1500), Image.Resampling.LANCZOS)
    options = ImageOptions(resize=True, height=256, width=256, resize_quality=ResizeQuality(quality))
    stored = Image.open(io.BytesIO(prepare_image(encode(large, quality=95), "x.JPEG", (), options).encoded))
    assert stored.size == (256, 256)
    assert psnr(stored, large.resize((256, 256), Image.Resampling.LANCZOS)) > minimum


def test_better_settings_are_closer_to_a_full_lanczos_resize(photo: Image.Image) -> None:
    large = encode(photo.resize((1600, 1200), Image.Resampling.LANCZOS), quality=95)
    reference = Image.open(io.BytesIO(large)).resize((256, 256), Image.Resampling.LANCZOS)
    scores = [
        psnr(Image.open(io.BytesIO(prepare_image(large, "x", (), ImageOptions(
            resize=True, resize_quality=ResizeQuality(q))).encoded)), reference)
        for q in ("fast", "default", "best")
    ]
    assert scores == sorted(scores)


def test_center_crop_boxes_are_reclamped_and_empty_ones_dropped() -> None:
    region = (0.125, 0.0, 0.875, 1.0)  # a 4:3 image cropped to its centre square
    boxes = ((0.0, 0.1, 0.5, 0.5), (0.0, 0.0, 0.1, 1.0), (0.5, 0.5, 1.0, 1.0))
    kept = crop_boxes(boxes, region)
    assert [v for box in kept for v in box] == pytest.approx([0.0, 0.1, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0])
    assert crop_boxes(boxes, (0.0, 0.0, 1.0, 1.0)) == boxes


@pytest.mark.parametrize(
    "data,reason",
    [(b"", "empty"), (b"<html>login</html>", "not an image file"), (b"\xff\xd8\xff\xe0\x00\x10JFIF", "frame header")],
)
def test_bad_bytes_name_the_file_and_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BadImageError, match=reason) as caught:
        prepare_image(data, "/data/bad.JPEG", (), ImageOptions())
    assert caught.value.path == "/data/bad.JPEG"


def test_truncated_jpeg_is_bad_in_both_modes(photo: Image.Image) -> None:
    data = encode(photo)
    for options in (ImageOptions(), ImageOptions(resize=True)):
        with pytest.raises(BadImageError, match="truncated"):
            prepare_image(data[: len(data) // 2], "t.JPEG", (), options)


def test_trailing_bytes_after_the_end_marker_are_kept(photo: Image.Image) -> None:
    data = encode(photo) + b"\x00\x00trailing garbage"
    assert prepare_image(data, "x.JPEG", (), ImageOptions()).encoded == data
