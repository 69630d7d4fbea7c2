"""A small ILSVRC-shaped dataset made offline from the photos shipped with scikit-image.

Real wnids, ImageNet-like sizes and JPEG settings, a flat validation folder named and
labelled as in ILSVRC-2012, a bounding-box CSV, and one of each awkward file: CMYK,
grayscale, progressive, a PNG named .JPEG, and a large photo.

`make_sample` writes `.sample.json` last (atomically): what decides the bytes (this module's
source, the random-number seed `make_sample` draws with, the libraries' versions) and each file's size and mtime. `find_sample` reuses
a sample whose marker still matches, so `--sample` run again makes nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from .errors import UserError, printable
from .inputs.labels import DEFAULT_LABELS_FILE, DEFAULT_VALIDATION_LABELS_FILE, load_validation_labels, load_wnids
from .storage.atomic import final_name, make_directory, write_atomically

SAMPLE_WNIDS = ("n01440764", "n02119789", "n02123045", "n03255030", "n04037443")
PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
          "hubble_deep_field.jpg", "retina.jpg", "ihc.png")
IMAGENET_LIKE_SIZES = ((500, 375), (375, 500), (500, 333), (500, 500), (333, 500), (450, 300))
TRAIN_PER_CLASS = 20
VALIDATION_PER_CLASS = 4
SPECIAL_KINDS = ("cmyk", "grayscale", "progressive", "png", "large")  # the first image of each class, in order
MARKER_NAME = ".sample.json"
CACHE_HOME_ENV = "XDG_CACHE_HOME"
SAMPLE_CACHE = Path("imagenet-tfrecords", "sample")  # below the user's cache folder
SAMPLE_DIR_HELP = f"${CACHE_HOME_ENV}/{SAMPLE_CACHE}, else ~/.cache/{SAMPLE_CACHE}"
LIBRARIES = ("pillow", "numpy", "scikit-image")  # they draw, resample and encode the sample's images


@dataclass
class Sample:
    root: Path
    train_dir: Path
    validation_dir: Path
    bounding_box_file: Path
    special: dict[str, Path] = field(default_factory=dict)  # kind -> file


def default_sample_dir() -> Path:
    """Where `--sample` alone puts the sample: the user's own cache folder (XDG), never a shared one."""
    cache = os.environ.get(CACHE_HOME_ENV, "")
    if not os.path.isabs(cache):  # unset, or relative: the XDG spec says to ignore it
        try:
            cache = str(Path.home() / ".cache")
        except RuntimeError:
            raise UserError(f"no home folder to keep the sample in: pass --sample DIR, or set {CACHE_HOME_ENV}") \
                from None
    return Path(cache) / SAMPLE_CACHE


def _photo_directory() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the sample is made from scikit-image's photos: run `pip install -r requirements.txt` first")
    return Path(spec.submodule_search_locations[0]) / "data"


def _load_photos() -> list[Image.Image]:
    directory = _photo_directory()
    return [Image.open(directory / name).convert("RGB") for name in PHOTOS]


def _tile(photos: list[Image.Image], rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A crop of a random photo at a random scale no larger than 1, so detail stays pixel-sharp."""
    photo = rng.choice(photos)
    scale = rng.uniform(0.5, 1.0)
    width, height = max(1, round(size[0] / scale)), max(1, round(size[1] / scale))
    if width > photo.width or height > photo.height:
        shrink = min(photo.width / width, photo.height / height)
        width, height = max(1, int(width * shrink)), max(1, int(height * shrink))
    left = rng.randint(0, photo.width - width)
    top = rng.randint(0, photo.height - height)
    tile = photo.crop((left, top, left + width, top + height)).resize(size, Image.Resampling.LANCZOS)
    return tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else tile


def make_photo(photos: list[Image.Image], rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A natural-looking image of `size`: real photo crops (a collage when the image is larger than
    the photos), never upscaled much, re-toned, with a little sensor noise."""
    canvas = Image.new("RGB", size)
    columns = max(1, -(-size[0] // 640))
    rows = max(1, -(-size[1] // 640))
    for row in range(rows):
        for column in range(columns):
            box = (column * size[0] // columns, row * size[1] // rows,
                   (column + 1) * size[0] // columns, (row + 1) * size[1] // rows)
            canvas.paste(_tile(photos, rng, (box[2] - box[0], box[3] - box[1])), box[:2])
    canvas = ImageEnhance.Brightness(canvas).enhance(rng.uniform(0.8, 1.2))
    # Seeded from `rng` (Pillow's effect_noise uses C rand(), which depends on earlier calls).
    noise = np.random.default_rng(rng.getrandbits(64)).normal(0.0, rng.uniform(3, 6), (size[1], size[0], 1))
    return Image.fromarray(np.clip(np.asarray(canvas, dtype=np.float32) + noise, 0, 255).round().astype(np.uint8))


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write `data` unless the file already holds it: a sample made again keeps its mtimes, so a
    build of it resumes instead of seeing changed inputs."""
    try:
        if not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data):
            path.write_bytes(data)
    except OSError as exc:
        raise UserError(f"{printable(path)}: cannot write the sample ({exc.strerror or exc}); "
                        "pass --sample a folder you can write to") from None


def _save(image: Image.Image, path: Path, kind: str, rng: random.Random) -> None:
    quality = rng.choice((85, 90, 93, 96))
    encoded = io.BytesIO()
    if kind == "cmyk":
        image.convert("CMYK").save(encoded, "JPEG", quality=quality)  # Pillow writes an Adobe marker
    elif kind == "grayscale":
        image.convert("L").save(encoded, "JPEG", quality=quality)
    elif kind == "progressive":
        image.save(encoded, "JPEG", quality=quality, progressive=True)
    elif kind == "png":
        image.save(encoded, "PNG")  # a PNG under a .JPEG name, as n02105855_2933.JPEG in ILSVRC-2012
    else:
        image.save(encoded, "JPEG", quality=quality)
    _write_if_changed(path, encoded.getvalue())


def _validation_numbers(wnids: tuple[str, ...]) -> dict[str, list[int]]:
    """The first ILSVRC-2012 validation image numbers of each class, from the shipped label file."""
    numbers: dict[str, list[int]] = {wnid: [] for wnid in wnids}
    for number, wnid in enumerate(load_validation_labels(DEFAULT_VALIDATION_LABELS_FILE), 1):
        if wnid in numbers and len(numbers[wnid]) < VALIDATION_PER_CLASS:
            numbers[wnid].append(number)
    return numbers


def _train_name(wnid: str, n: int) -> str:
    return f"{wnid}_{1000 + 37 * n}.JPEG"


def _layout(root: Path) -> tuple[Sample, set[Path], set[Path]]:
    """The sample `make_sample` writes under `root`, and every file and folder in it (the marker included),
    known without drawing an image."""
    sample = Sample(root, root / "train", root / "validation", root / "bounding_boxes.csv")
    sample.special = {kind: sample.train_dir / wnid / _train_name(wnid, 0)
                      for kind, wnid in zip(SPECIAL_KINDS, SAMPLE_WNIDS, strict=True)}
    folders = {sample.train_dir, sample.validation_dir} | {sample.train_dir / wnid for wnid in SAMPLE_WNIDS}
    files = {sample.train_dir / wnid / _train_name(wnid, n) for wnid in SAMPLE_WNIDS for n in range(TRAIN_PER_CLASS)}
    files |= {sample.validation_dir / f"ILSVRC2012_val_{number:08d}.JPEG"
              for numbers in _validation_numbers(SAMPLE_WNIDS).values() for number in numbers}
    files |= {sample.bounding_box_file, root / MARKER_NAME}
    return sample, files, folders


def _spec_digest(seed: int) -> str:
    """What decides the sample's bytes: this module's code, the random-number seed and the versions of the libraries that draw
    and encode it (scikit-image's also those of its photos)."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for library in LIBRARIES:
        try:
            version = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            version = "missing"
        digest.update(f"\0{library}={version}".encode())
    digest.update(f"\0seed={seed}".encode())
    return digest.hexdigest()


def _entries(root: Path) -> list[Path]:
    """Every file and folder below `root` (not following links), in a stable order."""
    found = []
    for directory, folders, files in os.walk(root):
        folders.sort()
        found += [Path(directory, name) for name in sorted(folders) + sorted(files)]
    return found


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def find_sample(root: Path, seed: int = 0) -> Sample | None:
    """The sample made earlier under `root`, if its marker says it was made as `make_sample` makes it now and
    every file is still there as made (size and mtime), with nothing beside it; else None."""
    try:
        marker = json.loads((root / MARKER_NAME).read_text(encoding="utf-8"))
        recorded = marker["files"]
        if marker["spec"] != _spec_digest(seed) or not isinstance(recorded, dict):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    sample, files, folders = _layout(root)
    if set(_entries(root)) != files | folders or {root / name for name in recorded} != files - {root / MARKER_NAME}:
        return None
    try:
        if any(_stamp(root / name) != stamp for name, stamp in recorded.items()):
            return None
    except OSError:
        return None
    return sample


def _refuse_foreign(root: Path, files: set[Path], folders: set[Path]) -> None:
    """One line when `root` holds anything the sample does not make: it would be built with the sample, or
    overwritten."""
    if root.exists() and not root.is_dir():
        raise UserError(f"{printable(root)}: not a folder; pass --sample a new or empty folder")
    foreign = [path for path in _entries(root) if path not in files | folders] if root.is_dir() else []
    if foreign:
        raise UserError(f"{printable(foreign[0])}: not part of the sample, which needs {printable(root)} to itself; "
                        "move it away, or pass --sample a new or empty folder")


def make_sample(root: Path, seed: int = 0) -> Sample:
    """Write the sample under `root` (train/, validation/, bounding_boxes.csv), then its marker; deterministic.
    Files already holding the right bytes are left as they are (a sample cut short is completed); anything else
    in `root` is refused."""
    sample, files, folders = _layout(root)
    if root.is_dir():  # a marker's temporary left by a run killed while writing it
        for path in root.iterdir():
            if final_name(path.name) == MARKER_NAME:
                path.unlink(missing_ok=True)
    _refuse_foreign(root, files, folders)
    (root / MARKER_NAME).unlink(missing_ok=True)  # made again: not reused until it is whole
    rng = random.Random(seed)
    photos = _load_photos()
    kinds = {path: kind for kind, path in sample.special.items()}
    box_lines = []
    for folder in sorted(folders):
        make_directory(folder, "the sample's folder", "; pass --sample a folder you can write to")
    for wnid in SAMPLE_WNIDS:
        for n in range(TRAIN_PER_CLASS):
            path = sample.train_dir / wnid / _train_name(wnid, n)
            kind = kinds.get(path, "plain")
            size = (2000, 1500) if kind == "large" else rng.choice(IMAGENET_LIKE_SIZES)
            _save(make_photo(photos, rng, size), path, kind, rng)
            if n < 3:
                for _ in range(1 + (n == 0)):
                    x0, y0 = rng.uniform(0, 0.5), rng.uniform(0, 0.5)
                    x1, y1 = rng.uniform(x0 + 0.1, 1.0), rng.uniform(y0 + 0.1, 1.0)
                    box_lines.append(f"{path.name},{x0:.4f},{y0:.4f},{x1:.4f},{y1:.4f}")
    for numbers in _validation_numbers(SAMPLE_WNIDS).values():
        for number in numbers:
            path = sample.validation_dir / f"ILSVRC2012_val_{number:08d}.JPEG"
            _save(make_photo(photos, rng, rng.choice(IMAGENET_LIKE_SIZES)), path, "plain", rng)
    _write_if_changed(sample.bounding_box_file, ("\n".join(sorted(box_lines)) + "\n").encode())
    made = {str(path.relative_to(root)): _stamp(path) for path in sorted(files - {root / MARKER_NAME})}
    write_atomically(root / MARKER_NAME, json.dumps({"spec": _spec_digest(seed), "files": made}, indent=1),
                     "the sample's marker")
    return sample


@dataclass(frozen=True)
class SampleTarballs:
    """The sample packed as the ILSVRC-2012 archives are."""

    train_tar: Path
    validation_tar: Path
    devkit: Path
    bbox_tar: Path


TARBALL_MTIME = 1_330_000_000  # fixed member times, so the tarballs are the same bytes every time
META_MAT_SEED = 2012
BOX_SCALE = 10_000  # XML <size> of the sample's boxes: 4-decimal relative coordinates stay exact


def _tar_bytes(members: list[tuple[str, bytes]], compress: bool = False) -> bytes:
    """A tar (or tar.gz) of regular files with fixed metadata."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), TARBALL_MTIME, 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0) if compress else buffer.getvalue()


def _meta_mat(wnids: list[str]) -> tuple[bytes, dict[str, int]]:
    """A devkit meta.mat, and its wnid -> ILSVRC2012_ID: the leaf synsets under IDs in a shuffled (not
    sorted-wnid) order, plus a root synset with children, as in the real one."""
    from scipy.io import savemat

    shuffled = list(wnids)
    random.Random(META_MAT_SEED).shuffle(shuffled)
    fields = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images")
    synsets = np.zeros(len(shuffled) + 1, dtype=[(f, object) for f in fields])
    for position, wnid in enumerate(shuffled):
        synsets[position] = (position + 1, wnid, wnid, "", 0, np.zeros(0), 0, TRAIN_PER_CLASS)
    children = np.arange(1, len(shuffled) + 1, dtype=np.float64)
    synsets[len(shuffled)] = (len(shuffled) + 1, "n00001740", "entity", "", len(shuffled), children, 19, 0)
    buffer = io.BytesIO()
    savemat(buffer, {"synsets": synsets})
    return buffer.getvalue(), {wnid: position + 1 for position, wnid in enumerate(shuffled)}


def _annotation(folder: str, boxes: list[list[float]]) -> bytes:
    objects = "".join(
        f"<object><name>{folder}</name><bndbox><xmin>{round(x0 * BOX_SCALE)}</xmin><ymin>{round(y0 * BOX_SCALE)}</ymin>"
        f"<xmax>{round(x1 * BOX_SCALE)}</xmax><ymax>{round(y1 * BOX_SCALE)}</ymax></bndbox></object>"
        for x0, y0, x1, y1 in boxes
    )
    return (f"<annotation><folder>{folder}</folder><filename>%s</filename><size><width>{BOX_SCALE}</width>"
            f"<height>{BOX_SCALE}</height><depth>3</depth></size>{objects}</annotation>").encode()


def make_sample_tarballs(sample: Sample, target: Path) -> SampleTarballs:
    """Pack a made sample as ILSVRC2012_img_train.tar (of per-class tars), ILSVRC2012_img_val.tar (flat,
    not in name order), ILSVRC2012_devkit_t12.tar.gz (meta.mat + ground truth) and the bbox tar.gz."""
    target.mkdir(parents=True, exist_ok=True)
    tarballs = SampleTarballs(target / "ILSVRC2012_img_train.tar", target / "ILSVRC2012_img_val.tar",
                              target / "ILSVRC2012_devkit_t12.tar.gz", target / "ILSVRC2012_bbox_train_v2.tar.gz")
    class_dirs = sorted(p for p in sample.train_dir.iterdir() if p.is_dir())
    _write_if_changed(tarballs.train_tar, _tar_bytes(
        [(f"{d.name}.tar", _tar_bytes([(p.name, p.read_bytes()) for p in sorted(d.iterdir())])) for d in class_dirs]))
    validation = sorted(sample.validation_dir.iterdir())
    random.Random(META_MAT_SEED).shuffle(validation)  # the real tar is not in name order either
    _write_if_changed(tarballs.validation_tar, _tar_bytes([(p.name, p.read_bytes()) for p in validation]))
    meta, ids = _meta_mat(load_wnids(DEFAULT_LABELS_FILE))
    truth = "".join(f"{ids[wnid]}\n" for wnid in load_validation_labels(DEFAULT_VALIDATION_LABELS_FILE))
    _write_if_changed(tarballs.devkit, _tar_bytes([("ILSVRC2012_devkit_t12/data/meta.mat", meta),
                                            ("ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
                                             truth.encode())], compress=True))
    boxes: dict[str, list[list[float]]] = {}
    for line in sample.bounding_box_file.read_text().split():
        name, *coords = line.split(",")
        boxes.setdefault(name, []).append([float(c) for c in coords])
    _write_if_changed(tarballs.bbox_tar, _tar_bytes(
        [(f"{name.split('_')[0]}/{name[:-len('.JPEG')]}.xml", _annotation(name.split("_")[0], b))
         for name, b in sorted(boxes.items())], compress=True))
    return tarballs
