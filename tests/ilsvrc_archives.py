"""Small ILSVRC-2012-shaped archives for the download tests, made in memory from scikit-image photos.

A train tar of per-class tars, a flat validation tar in unsorted member order, a devkit tar.gz and
a bounding-box tar.gz of PASCAL VOC XML, with the same names and layouts as the real ones; and the
Kaggle layout of a made sample.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import random
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from imagenet_tfrecords.inputs.labels import (DEFAULT_LABELS_FILE, DEFAULT_METADATA_FILE, DEFAULT_VALIDATION_LABELS_FILE,
                                       load_texts, load_validation_labels, load_wnids)
from imagenet_tfrecords.sample import Sample, _load_photos, make_photo

WNIDS = ("n01440764", "n02119789", "n02123045")  # real ILSVRC-2012 synsets: tench, kit fox, tabby
TRAIN_PER_CLASS = 4
VALIDATION_IMAGES = 6
SIZES = ((80, 60), (60, 80), (72, 72))
UNLISTED_WNID = "n00007846"  # "person": in ImageNet-21k, not one of the 1000 ILSVRC-2012 synsets
TRAIN = "ILSVRC2012_img_train.tar"
VAL = "ILSVRC2012_img_val.tar"
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
BBOX = "ILSVRC2012_bbox_train_v2.tar.gz"


@dataclass(frozen=True)
class Archives:
    files: dict[str, bytes]  # archive name -> bytes
    train_images: dict[str, tuple[str, ...]]  # wnid -> image names
    validation_labels: tuple[str, ...]  # line i: wnid of ILSVRC2012_val_{i+1:08d}.JPEG
    boxes: dict[str, tuple[float, float, float, float]]  # image -> its one expected box (relative)

    def md5sum(self) -> str:
        """The archives' MD5s in `md5sum` format."""
        return "".join(f"{hashlib.md5(data).hexdigest()}  {name}\n" for name, data in self.files.items())


def _jpeg(photos: list, rng: random.Random) -> bytes:
    buffer = io.BytesIO()
    make_photo(photos, rng, rng.choice(SIZES)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def tar_bytes(members: list[tuple[str, bytes] | tarfile.TarInfo], compress: bool = False) -> bytes:
    """A tar (or tar.gz) of regular files with fixed metadata, so the bytes are reproducible; a TarInfo
    member (a link, a device) goes in as it is."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
                continue
            name, data = member
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_300_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0) if compress else buffer.getvalue()


def annotation_xml(folder: str, image: str, size: tuple[int, int], objects: list[tuple[str, tuple[int, int, int, int]]]) -> bytes:
    """A PASCAL VOC annotation as in ILSVRC2012_bbox_train_v2 (the <filename> tag holds '%s', as some do)."""
    boxes = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"
        "</bndbox></object>"
        for name, (x0, y0, x1, y1) in objects
    )
    return (f"<annotation><folder>{folder}</folder><filename>%s</filename><size><width>{size[0]}</width>"
            f"<height>{size[1]}</height><depth>3</depth></size>{boxes}</annotation>").encode()


@functools.lru_cache(maxsize=1)
def make_archives() -> Archives:
    """The four archives; deterministic, built once per process (about 100 KB in all)."""
    rng, photos = random.Random(3), _load_photos()
    train_images = {wnid: tuple(f"{wnid}_{100 + 7 * n}.JPEG" for n in range(TRAIN_PER_CLASS)) for wnid in WNIDS}
    class_tars = [(f"{wnid}.tar", tar_bytes([(name, _jpeg(photos, rng)) for name in names]))
                  for wnid, names in train_images.items()]
    labels = tuple(WNIDS[n % len(WNIDS)] for n in range(VALIDATION_IMAGES))
    val_names = [f"ILSVRC2012_val_{n:08d}.JPEG" for n in range(1, VALIDATION_IMAGES + 1)]
    rng.shuffle(val_names)  # the real tar is not in name order either
    devkit = [("ILSVRC2012_devkit_t12/readme.txt", b"ILSVRC2012 development kit (test copy)\n"),
              ("ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
               "".join(f"{WNIDS.index(w) + 1}\n" for w in labels).encode())]
    boxes, xml_members = {}, []
    for wnid in WNIDS:
        image = train_images[wnid][0]
        xml_members.append((f"{wnid}/{image[:-5]}.xml",
                            annotation_xml(wnid, image, (200, 100), [(wnid, (20, 10, 120, 90))])))
        boxes[image] = (0.1, 0.1, 0.6, 0.9)
    xml_members.append((f"{UNLISTED_WNID}/{UNLISTED_WNID}_1.xml",
                        annotation_xml(UNLISTED_WNID, "x", (100, 100), [(UNLISTED_WNID, (1, 1, 50, 50))])))
    files = {
        TRAIN: tar_bytes(class_tars),
        VAL: tar_bytes([(name, _jpeg(photos, rng)) for name in val_names]),
        DEVKIT: tar_bytes(devkit, compress=True),
        BBOX: tar_bytes(xml_members, compress=True),
    }
    return Archives(files, train_images, labels, boxes)


def make_kaggle_tree(sample: Sample, root: Path, relabel: dict[str, str] | None = None) -> Path:
    """The sample in the Kaggle layout (hard links): ILSVRC/Data/CLS-LOC/{train,val,test}, LOC_synset_mapping.txt
    (all 1000 synsets) and LOC_val_solution.csv; `relabel` gives some validation images another first wnid."""
    data = root / "ILSVRC" / "Data" / "CLS-LOC"
    shutil.copytree(sample.train_dir, data / "train", copy_function=os.link)
    shutil.copytree(sample.validation_dir, data / "val", copy_function=os.link)
    (data / "test").mkdir()
    wnids = load_wnids(DEFAULT_LABELS_FILE)
    texts = load_texts(DEFAULT_METADATA_FILE, wnids)
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {t}\n" for w, t in zip(wnids, texts)))
    labels, relabel = load_validation_labels(DEFAULT_VALIDATION_LABELS_FILE), relabel or {}
    rows = ["ImageId,PredictionString"]
    for path in sorted((data / "val").iterdir(), reverse=True):
        wnid = relabel.get(path.name, labels[int(path.stem.rsplit("_", 1)[1]) - 1])
        rows.append(f"{path.stem},{wnid} 12 30 200 310 {wnid} 5 5 60 90 ")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return root
