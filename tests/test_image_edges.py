"""Hostile images at the edges, each a real file of its kind, built with the real CLI and read back
with tf.data: JPEGs TensorFlow cannot decode, high bit depths, decompression bombs, running out
of memory, colour profiles, EXIF orientation and 12-bit JPEGs."""

from __future__ import annotations

import io
import math
import os
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tifffile
from PIL import Image, ImageEnhance, ImageOps
from scipy.fft import dctn

from conftest import REPO, run_build_cli
from test_bad_input import assert_one_line_error
from tfread import decode, read_split

from imagenet_tfrecords.images.acceptance import DEFAULT_MAX_PIXELS, tensorflow_jpeg_problem
from imagenet_tfrecords.images.formats import read_jpeg_header
from imagenet_tfrecords.images.resize import orient_boxes
from imagenet_tfrecords.sample import _load_photos, make_photo

WNID = "n01440764"
LIMIT_TEXT = f"over the limit of {DEFAULT_MAX_PIXELS:,}"


# ---- real files of each kind -------------------------------------------------------------------

@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return _load_photos()


def photo(photos: list[Image.Image], seed: int, size: tuple[int, int] = (500, 375)) -> Image.Image:
    return make_photo(photos, random.Random(seed), size)


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **{"quality": 90, **options})
    return buffer.getvalue()


def png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def scan_start(data: bytes) -> int:
    sos = data.index(b"\xff\xda")
    return sos + 2 + struct.unpack_from(">H", data, sos + 2)[0]


def hostile_variants(data: bytes, rng: random.Random) -> dict[str, bytes]:
    """Damaged copies of one JPEG: the kinds found in real crawls and broken downloads."""
    start, end = scan_start(data), len(data) - 2
    variants = {}
    for k in range(6):  # random bytes inside the entropy-coded data; the end marker is kept
        damaged = bytearray(data)
        count = rng.choice([1, 4, 16, 64, 256])
        at = rng.randint(start, end - count - 1)
        damaged[at:at + count] = bytes(rng.randrange(256) for _ in range(count))
        variants[f"corrupt{k}"] = bytes(damaged)
    cut = rng.randint(start, end - 100)
    variants["middle_cut_out"] = data[:cut] + data[cut + rng.randint(10, 2000):]
    variants["truncated"] = data[:rng.randint(start, end)]
    variants["no_end_marker"] = data[:-2]
    junk = bytes(rng.randrange(255) for _ in range(rng.randint(1, 300)))  # no 0xFF: not a marker
    variants["extraneous_bytes_before_marker"] = data[:-2] + junk + data[-2:]
    variants["trailing_garbage"] = data + b"<html>after the end marker</html>"
    sos = data.rindex(b"\xff\xda", 0, start)
    variants["undefined_huffman_table"] = data[:sos + 6] + b"\x33" + data[sos + 7:]  # intact markers, no table 3
    return variants


def tensorflow_decodes(data: bytes) -> bool:
    try:
        tf.io.decode_jpeg(data, channels=3)
        return True
    except tf.errors.InvalidArgumentError:
        return False


def png_file(width: int, height: int, bit_depth: int, colour_type: int, rows) -> bytes:
    """A PNG from raw scanlines, streamed through zlib (Pillow writes no 16-bit RGB PNG, and a
    bomb's pixels need never be held)."""
    compressor, chunks = zlib.compressobj(9), []
    for row in rows:
        chunks.append(compressor.compress(b"\0" + row))
    chunks.append(compressor.flush())

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(chunks)) + chunk(b"IEND", b"")


def png16(samples: np.ndarray) -> bytes:
    samples = np.asarray(samples, ">u2")
    height, width = samples.shape[:2]
    return png_file(width, height, 16, 0 if samples.ndim == 2 else 2, (samples[y].tobytes() for y in range(height)))


def tall_jpeg(strip: Image.Image, rows: int) -> bytes:
    """A real JPEG `rows` times as tall as an 8-pixel grayscale strip, made without ever holding its
    pixels: the strip is encoded with a restart marker after its one MCU row, and that row repeated."""
    data = jpeg(strip, quality=50, optimize=True, restart_marker_rows=1)
    sof, start = data.index(b"\xff\xc0"), scan_start(data)
    row = data[start:-2]
    header = data[:sof + 5] + struct.pack(">H", 8 * rows) + data[sof + 7:start]
    return header + b"".join(row + bytes([0xFF, 0xD0 + i % 8]) for i in range(rows - 1)) + row + b"\xff\xd9"


def claim_size(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with a frame header that claims another size (a bomb by its header only)."""
    sof = data.index(b"\xff\xc0")
    return data[:sof + 5] + struct.pack(">HH", height, width) + data[sof + 9:]


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _zigzag() -> list[int]:
    """The raster index of each coefficient of an 8x8 block, in JPEG's zig-zag order."""
    order = []
    for s in range(15):
        diagonal = [(i, s - i) for i in range(max(0, s - 7), min(s, 7) + 1)]
        order += [r * 8 + c for r, c in (diagonal if s % 2 else [(c, r) for r, c in diagonal])]
    return order


def jpeg12(gray: np.ndarray) -> bytes:
    """A real 12-bit (extended sequential, SOF1) grayscale JPEG; no installed library writes one.
    JPEG's forward DCT (the orthonormal 8x8 DCT-II), quantiser 8, Huffman codes of fixed length."""
    dc_symbols = list(range(16))
    ac_symbols = [0x00, 0xF0] + [(run << 4) | size for run in range(16) for size in range(1, 15)]
    out, value, count, previous_dc = bytearray(), 0, 0, 0

    def put(code: int, length: int) -> None:
        nonlocal value, count
        value, count = (value << length) | code, count + length
        while count >= 8:
            count -= 8
            byte = (value >> count) & 0xFF
            out.extend(b"\xff\x00" if byte == 0xFF else bytes([byte]))

    def put_value(number: int, code_of_size) -> None:
        size = abs(number).bit_length()
        code_of_size(size)
        put(number if number >= 0 else number + (1 << size) - 1, size)

    zigzag = _zigzag()
    for top in range(0, gray.shape[0], 8):
        for left in range(0, gray.shape[1], 8):
            block = dctn(gray[top:top + 8, left:left + 8].astype(np.float64) - 2048, norm="ortho")
            coefficients = [int(round(v)) for v in (block.ravel() / 8)[zigzag]]
            put_value(coefficients[0] - previous_dc, lambda size: put(dc_symbols.index(size), 5))
            previous_dc, run = coefficients[0], 0
            for number in coefficients[1:]:
                if number == 0:
                    run += 1
                    continue
                for _ in range(run // 16):
                    put(ac_symbols.index(0xF0), 8)
                put_value(number, lambda size, run=run % 16: put(ac_symbols.index((run << 4) | size), 8))
                run = 0
            if run:
                put(ac_symbols.index(0x00), 8)
    if count:
        put((1 << (8 - count)) - 1, 8 - count)

    def huffman_table(table_class: int, symbols: list[int], length: int) -> bytes:
        counts = [len(symbols) if i == length - 1 else 0 for i in range(16)]
        return _segment(0xC4, bytes([table_class << 4, *counts, *symbols]))

    height, width = gray.shape
    return (b"\xff\xd8" + _segment(0xDB, bytes([0] + [8] * 64))
            + _segment(0xC1, struct.pack(">BHHB", 12, height, width, 1) + b"\x01\x11\x00")
            + huffman_table(0, dc_symbols, 5) + huffman_table(1, ac_symbols, 8)
            + _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + bytes(out) + b"\xff\xd9")


# Adobe RGB (1998): colorants adapted to D50 (as in its ICC profile), gamma 563/256, and its
# D65 matrix to XYZ; sRGB's matrix from XYZ. The independent conversion uses only these numbers.
ADOBE_COLORANTS_D50 = ((0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087), (0.14919, 0.06322, 0.74457))
ADOBE_GAMMA = 563 / 256
ADOBE_TO_XYZ = np.array([[0.5767309, 0.1855540, 0.1881852], [0.2973769, 0.6273491, 0.0752741],
                         [0.0270343, 0.0706872, 0.9911085]])
XYZ_TO_SRGB = np.array([[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])


def _s15_fixed16(*values: float) -> bytes:
    return b"".join(struct.pack(">i", round(v * 65536)) for v in values)


def adobe_rgb_profile() -> bytes:
    """An ICC v2 matrix/TRC display profile of Adobe RGB (1998), written here (no download)."""
    def xyz(values) -> bytes:
        return b"XYZ \0\0\0\0" + _s15_fixed16(*values)

    name = b"Adobe RGB (1998)-like test profile\0"
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(ADOBE_GAMMA * 256)) + b"\0\0"
    tags = [(b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(name)) + name + bytes(78)),
            (b"wtpt", xyz((0.9642, 1.0, 0.8249))), (b"rXYZ", xyz(ADOBE_COLORANTS_D50[0])),
            (b"gXYZ", xyz(ADOBE_COLORANTS_D50[1])), (b"bXYZ", xyz(ADOBE_COLORANTS_D50[2])),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve), (b"cprt", b"text\0\0\0\0none\0\0\0\0")]
    table, body = b"", b""
    first = 128 + 4 + 12 * len(tags)
    for signature, payload in tags:
        payload += bytes(-len(payload) % 4)
        table += signature + struct.pack(">II", first + len(body), len(payload))
        body += payload
    header = (struct.pack(">I", first + len(body)) + bytes(4) + b"\x02\x10\x00\x00" + b"mntrRGB XYZ " + bytes(12)
              + b"acsp" + bytes(28) + _s15_fixed16(0.9642, 1.0, 0.8249) + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + body


def srgb_decode(values: np.ndarray) -> np.ndarray:
    v = values / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return 255 * np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def adobe_to_srgb(pixels: np.ndarray) -> np.ndarray:
    return srgb_encode((pixels / 255.0) ** ADOBE_GAMMA @ (XYZ_TO_SRGB @ ADOBE_TO_XYZ).T)


def srgb_to_adobe(pixels: np.ndarray) -> np.ndarray:
    adobe = np.clip(srgb_decode(pixels) @ np.linalg.inv(XYZ_TO_SRGB @ ADOBE_TO_XYZ).T, 0.0, 1.0)
    return np.round(255 * adobe ** (1 / ADOBE_GAMMA)).astype(np.uint8)


def psnr(output: np.ndarray, reference: np.ndarray) -> float:
    error = float(np.mean((np.asarray(output, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return 10 * math.log10(255**2 / max(error, 1e-10))


# ---- building and reading back ----------------------------------------------------------------

def make_tree(root: Path, photos: list[Image.Image], files: dict[str, bytes], ordinary: int = 2) -> Path:
    """root/<wnid>/ holding a few ordinary photos and the given files."""
    folder = root / WNID
    folder.mkdir(parents=True)
    for k in range(ordinary):
        (folder / f"{WNID}_{k}.JPEG").write_bytes(jpeg(photo(photos, 100 + k)))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return root


def build(train: Path, output: Path, *extra: str | Path) -> subprocess.CompletedProcess:
    return run_build_cli("--train_directory", train, "--output_directory", output, "--train_shards", "1",
                         "--num_threads", "1", *extra, check=False)


def stored(output: Path) -> dict[str, dict]:
    """filename -> record, read back with tf.data; every image decoded by TensorFlow."""
    records = {r["image/filename"]: r for r in read_split(output, "train")}
    for record in records.values():
        record["pixels"] = decode(record["image/encoded"])
        assert record["pixels"].shape == (record["image/height"], record["image/width"], 3)
    return records


def bad_images(output: Path) -> dict[str, str]:
    lines = (output / "bad_images.tsv").read_text().splitlines()[1:]
    return {Path(path).name: reason for _, path, reason in (line.split("\t") for line in lines)}


def verify_deep(output: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_build_cli("--verify", output, "--deep", "--num_threads", "1", *extra, check=False)


# ---- 1. copy mode proves every stored JPEG decodes, by TensorFlow's rule ---------------------------

def test_decode_check_agrees_with_tensorflow_on_every_hostile_jpeg(photos: list[Image.Image]) -> None:
    rng = random.Random(11)
    outcomes = {}
    for k in range(15):  # baseline (proved from the markers), with restart markers, and progressive
        original = jpeg(photo(photos, k, rng.choice([(500, 375), (375, 500), (333, 500)])),
                        quality=rng.randint(75, 95), progressive=k % 3 == 0, restart_marker_blocks=4 * (k % 3 == 1))
        header = read_jpeg_header(original)
        for kind, data in hostile_variants(original, rng).items():
            ours = tensorflow_jpeg_problem(data, header) is None
            assert ours == tensorflow_decodes(data), f"{kind} of photo {k}: we keep it: {ours}"
            outcomes.setdefault(kind.rstrip("0123456789"), set()).add(ours)
    assert outcomes["corrupt"] == {True, False}  # both kinds of corrupt data with an end marker occur
    assert outcomes["extraneous_bytes_before_marker"] == outcomes["trailing_garbage"] == {True}
    assert outcomes["truncated"] == outcomes["no_end_marker"] == outcomes["undefined_huffman_table"] == {False}


def corrupt_but_ended(photos: list[Image.Image]) -> bytes:
    """Corrupt entropy-coded data that still ends with the end marker, which TensorFlow rejects."""
    rng = random.Random(5)
    original = jpeg(photo(photos, 7))
    while True:
        damaged = bytearray(original)
        at = rng.randint(scan_start(original), len(original) - 300)
        damaged[at:at + 64] = bytes(rng.randrange(256) for _ in range(64))
        if not tensorflow_decodes(bytes(damaged)):
            return bytes(damaged)


def test_copy_mode_refuses_what_tensorflow_rejects_and_keeps_warned_jpegs(photos, tmp_path: Path) -> None:
    corrupt = corrupt_but_ended(photos)
    warned = jpeg(photo(photos, 8))
    warned = warned[:-2] + b"\x00\x11\x22" + warned[-2:]  # libjpeg: "3 extraneous bytes before marker 0xd9"
    assert corrupt.endswith(b"\xff\xd9") and tensorflow_decodes(warned)
    train = make_tree(tmp_path / "train", photos, {"corrupt.JPEG": corrupt, "warned.JPEG": warned})

    result = build(train, tmp_path / "stopped")
    assert_one_line_error(result, str(train / WNID / "corrupt.JPEG"), "TensorFlow's decode_jpeg fails on it",
                          "--skip_bad_images")

    output = tmp_path / "checked"
    result = build(train, output, "--skip_bad_images")
    assert result.returncode == 0, result.stderr
    assert list(bad_images(output)) == ["corrupt.JPEG"]
    records = stored(output)
    assert sorted(records) == [f"{WNID}_0.JPEG", f"{WNID}_1.JPEG", "warned.JPEG"]
    assert records["warned.JPEG"]["image/encoded"] == warned  # kept as it is, warning and all
    assert verify_deep(output).returncode == 0

    unchecked = tmp_path / "unchecked"
    assert build(train, unchecked, "--no_decode_check").returncode == 0
    assert "corrupt.JPEG" in {r["image/filename"] for r in read_split(unchecked, "train")}
    result = verify_deep(unchecked)  # the same rule finds what the opt-out let through
    assert result.returncode == 1
    assert "(corrupt.JPEG): image is bad: corrupt or truncated JPEG data" in result.stdout


# ---- 2. high bit depths are scaled, not clipped -------------------------------------------------

def test_high_bit_depth_png_and_tiff_are_scaled_to_8_bits(photos, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rgb8 = np.asarray(photo(photos, 21, (320, 240)))
    gray8 = np.asarray(Image.fromarray(rgb8).convert("L"))
    # 16 bits of real precision: the 8-bit photo times 257, plus noise below one 8-bit step
    rgb16 = (rgb8.astype(np.int64) * 257 + rng.integers(-128, 128, rgb8.shape)).clip(0, 65535).astype(np.uint16)
    gray16 = (gray8.astype(np.int64) * 257 + rng.integers(-128, 128, gray8.shape)).clip(0, 65535).astype(np.uint16)

    def tiff(samples: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, samples, photometric="rgb" if samples.ndim == 3 else "minisblack")
        return buffer.getvalue()

    files = {  # name -> (file, its correct 8-bit RGB conversion); TIFFs named .JPEG, as ImageNet names its PNG
        "gray16.png": (png16(gray16), gray16 / 257),
        "rgb16.png": (png16(rgb16), rgb16 / 257),
        "gray16_tiff.JPEG": (tiff(gray16), gray16 / 257),
        "gray32_tiff.JPEG": (tiff(gray16.astype(np.uint32) * 65537), gray16 / 257),
        "rgb_float_tiff.JPEG": (tiff((rgb16 / 65535).astype(np.float32)), rgb16 / 257),
        "gray_float_tiff.JPEG": (tiff((gray16 / 65535).astype(np.float32)), gray16 / 257),
    }
    train = make_tree(tmp_path / "train", photos, {name: data for name, (data, _) in files.items()}, ordinary=0)
    output = tmp_path / "out"
    assert build(train, output).returncode == 0
    records = stored(output)
    assert sorted(records) == sorted(files)
    for name, (_, expected) in files.items():
        expected = np.round(expected)
        if expected.ndim == 2:
            expected = np.repeat(expected[:, :, None], 3, axis=2)
        assert psnr(records[name]["pixels"], expected) >= 30, name


# ---- 6. decompression bombs and running out of memory --------------------------------------------

@pytest.fixture(scope="module")
def real_bomb(photos: list[Image.Image]) -> bytes:
    """A real 20000 x 20000 JPEG (a photo strip repeated; a few MB on disk)."""
    strip = np.zeros((8, 20000), np.uint8) + 128
    strip[:, :256] = np.asarray(photo(photos, 30, (256, 8)).convert("L"))
    data = tall_jpeg(Image.fromarray(strip), 2500)
    assert (read_jpeg_header(data).width, read_jpeg_header(data).height) == (20000, 20000)
    return data


def png_bomb(side: int) -> bytes:
    """A real side x side grayscale PNG of a repeated photo row: tiny on disk, side**2 bytes decoded."""
    row = bytes(random.Random(1).randrange(256) for _ in range(64)) * (side // 64) + bytes(side % 64)
    return png_file(side, side, 8, 0, (row for _ in range(side)))


@pytest.mark.parametrize("resize", [[], ["--resize_images"]], ids=["copy", "resize"])
def test_decompression_bombs_are_bad_images_in_build_and_verify(photos, real_bomb, tmp_path: Path,
                                                                resize: list[str]) -> None:
    files = {"bomb_20000.JPEG": real_bomb, "claims_65000.JPEG": claim_size(jpeg(photo(photos, 31)), 65000, 65000),
             "bomb_10000.png": png_bomb(10000)}
    train = make_tree(tmp_path / "train", photos, files)
    assert_one_line_error(build(train, tmp_path / "stopped", *resize), "bomb_20000.JPEG", LIMIT_TEXT, "--max_pixels")

    output = tmp_path / "out"
    result = build(train, output, "--skip_bad_images", *resize)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    reasons = bad_images(output)
    assert sorted(reasons) == sorted(files) and all(LIMIT_TEXT in reason for reason in reasons.values())
    assert sorted(stored(output)) == [f"{WNID}_0.JPEG", f"{WNID}_1.JPEG"]
    assert verify_deep(output).returncode == 0


def test_the_pixel_limit_is_a_flag_that_verify_follows(photos, real_bomb, tmp_path: Path) -> None:
    train = make_tree(tmp_path / "train", photos, {"bomb_20000.JPEG": real_bomb})
    output = tmp_path / "out"
    result = build(train, output, "--resize_images", "--max_pixels", "400000000")
    assert result.returncode == 0, result.stderr
    assert stored(output)["bomb_20000.JPEG"]["pixels"].shape == (256, 256, 3)

    big = tmp_path / "big"  # copy mode, a 1.2-megapixel photo under a limit of one megapixel
    (big / WNID).mkdir(parents=True)
    (big / WNID / "large.JPEG").write_bytes(jpeg(photo(photos, 32, (1280, 960))))
    assert_one_line_error(build(big, tmp_path / "refused", "--max_pixels", "1000000"), "large.JPEG",
                          "over the limit of 1,000,000")
    assert build(big, tmp_path / "kept").returncode == 0
    assert verify_deep(tmp_path / "kept").returncode == 0  # the build's limit, from manifest.json
    result = verify_deep(tmp_path / "kept", "--max_pixels", "1000000")
    assert result.returncode == 1 and "(large.JPEG): image is bad: 1280x960" in result.stdout


MEMORY_LIMITED_BUILD = """
import resource, sys
import imagenet_tfrecords.cli as cli, imagenet_tfrecords.images.prepare, imagenet_tfrecords.output.shard  # loaded first
in_use = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (in_use + 160 * 2**20, resource.RLIM_INFINITY))
sys.exit(cli.main(sys.argv[1:]))
"""


def test_running_out_of_memory_on_one_image_is_a_bad_image(photos, tmp_path: Path) -> None:
    # 64 megapixels (under the pixel limit) need 192 MiB as RGB: more than this build may have
    train = make_tree(tmp_path / "train", photos, {"huge.png": png_bomb(8000)})
    output = tmp_path / "out"
    result = subprocess.run([sys.executable, "-c", MEMORY_LIMITED_BUILD, "--train_directory", str(train),
                             "--output_directory", str(output), "--train_shards", "1", "--num_threads", "1",
                             "--skip_bad_images"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "MALLOC_ARENA_MAX": "1"})  # no per-thread arenas: a steady limit
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "not enough memory to convert it" in bad_images(output)["huge.png"]
    assert sorted(stored(output)) == [f"{WNID}_0.JPEG", f"{WNID}_1.JPEG"]


# ---- 7. colour profiles and EXIF orientation ------------------------------------------------------

def test_embedded_adobe_rgb_profile_is_converted_to_srgb(photos, tmp_path: Path) -> None:
    scene = np.asarray(ImageEnhance.Color(photo(photos, 40, (320, 240))).enhance(2.5))  # saturated colours
    adobe = Image.fromarray(srgb_to_adobe(scene))
    profile = adobe_rgb_profile()
    files = {"adobe.JPEG": jpeg(adobe, quality=95, icc_profile=profile), "adobe.png": png(adobe, icc_profile=profile),
             "adobe_alpha.png": png(adobe.convert("RGBA"), icc_profile=profile)}
    train = make_tree(tmp_path / "train", photos, files, ordinary=0)
    for mode in (["--resize_images", "--new_width", "320", "--new_height", "240"], []):
        output = tmp_path / f"out{len(mode)}"
        assert build(train, output, *mode).returncode == 0
        records = stored(output)
        for name, data in files.items():
            if not mode and name.endswith("JPEG"):
                continue  # copy mode stores an ordinary JPEG as it is, profile included
            as_written = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float64)
            correct = adobe_to_srgb(as_written)
            assert psnr(records[name]["pixels"], correct) >= 30, (name, mode)
            assert psnr(as_written, correct) < psnr(records[name]["pixels"], correct) - 3  # the profile matters


def test_exif_orientation_is_ignored_by_default_and_applied_on_request(photos, tmp_path: Path) -> None:
    upright = photo(photos, 50, (375, 500))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to show": the camera was held on its side
    data = jpeg(upright.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes())  # stored 500 x 375
    train = make_tree(tmp_path / "train", photos, {"turned.JPEG": data}, ordinary=0)
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("turned.JPEG,0.1,0.2,0.3,0.6\n")  # on the stored (sideways) pixels

    as_stored = stored_after(build(train, tmp_path / "default", "--bounding_box_file", boxes), tmp_path / "default")
    assert as_stored["image/encoded"] == data and as_stored["pixels"].shape == (375, 500, 3)

    output = tmp_path / "applied"
    turned = stored_after(build(train, output, "--bounding_box_file", boxes, "--apply_exif_orientation"), output)
    assert turned["pixels"].shape == (500, 375, 3)
    assert psnr(turned["pixels"], np.asarray(upright)) >= 30
    box = [turned[f"image/object/bbox/{k}"][0] for k in ("xmin", "ymin", "xmax", "ymax")]
    assert np.allclose(box, [0.4, 0.1, 0.8, 0.3])  # the stored box turned with the pixels


@pytest.mark.parametrize("orientation", range(1, 9))
def test_boxes_turn_as_pillow_turns_the_pixels(orientation: int) -> None:
    box = (0.1, 0.2, 0.3, 0.6)
    image = Image.new("L", (40, 30))
    image.paste(255, (4, 6, 12, 18))  # the box, in pixels of the stored image
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    upright = ImageOps.exif_transpose(image)
    left, top, right, bottom = upright.getbbox()
    expected = (left / upright.width, top / upright.height, right / upright.width, bottom / upright.height)
    assert np.allclose(orient_boxes((box,), orientation)[0], expected)


def stored_after(result: subprocess.CompletedProcess, output: Path) -> dict:
    assert result.returncode == 0, result.stderr
    (record,) = stored(output).values()
    return record


# ---- 9. 12-bit JPEG -----------------------------------------------------------------------------

def test_12_bit_jpeg_is_one_line_saying_what_to_do(photos, tmp_path: Path) -> None:
    gray = np.asarray(photo(photos, 60, (64, 48)).convert("L")).astype(np.int64) * 16 + 8
    data = jpeg12(gray)
    assert read_jpeg_header(data).precision == 12
    train = make_tree(tmp_path / "train", photos, {"deep.JPEG": data})
    result = build(train, tmp_path / "out")
    assert_one_line_error(result, str(train / WNID / "deep.JPEG"), "12-bit JPEG",
                          "TensorFlow's decode_jpeg reads only 8-bit JPEGs", "convert it to an 8-bit JPEG")
    assert "BytesIO" not in result.stderr
