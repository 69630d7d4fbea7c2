"""Bounding boxes from ILSVRC PASCAL-VOC XML to the Inception CSV, as process_bounding_boxes.py did.

Rules (docs/imagenet-facts.md, "Bounding boxes"): coordinates are divided by the `<size>` of the
image; min and max are swapped when inverted, then clamped to [0, 1]; a box with xmin >= xmax or
ymin >= ymax is dropped; with a synset list, files of unlisted synsets are skipped, and so are
boxes whose `<name>` is a different listed synset (non-wnid names such as 'Scottish_deerhound' are
kept); the image name comes from the XML file name (the `<filename>` tag sometimes holds '%s').
The bbox tar is read as a stream, never unpacked, both by the downloader and by a build given --bbox_tar.
"""

from __future__ import annotations

import logging
import os
import posixpath
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from ..storage.atomic import write_atomically
from .labels import Box
from .tar_members import safe_path, stream_tar

log = logging.getLogger(__name__)

BOUNDING_BOX_CSV = "bounding_boxes.csv"


def image_name(xml_path: str) -> str:
    """`n01440764/n01440764_10026.xml` -> `n01440764_10026.JPEG`."""
    return posixpath.splitext(posixpath.basename(xml_path))[0] + ".JPEG"


def _number(node: ET.Element, tag: str) -> float:
    text = node.findtext(tag)
    if text is None:
        raise ValueError(f"no <{tag}>")
    return float(text)


def _clamp(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def boxes_from_xml(data: bytes, wnid: str, synsets: frozenset[str] | None = None) -> list[Box]:
    """The relative boxes of one annotation of an image of `wnid`; ValueError when the XML is malformed."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ValueError(f"not XML ({exc})") from None
    size = root.find("size")
    if size is None:
        raise ValueError("no <size>")
    width, height = _number(size, "width"), _number(size, "height")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size {width}x{height}")
    boxes: list[Box] = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if synsets is not None and name != wnid and name in synsets:
            continue
        node = obj.find("bndbox")
        if node is None:
            raise ValueError("an <object> without <bndbox>")
        x0, x1 = _number(node, "xmin") / width, _number(node, "xmax") / width
        y0, y1 = _number(node, "ymin") / height, _number(node, "ymax") / height
        box = (_clamp(min(x0, x1)), _clamp(min(y0, y1)), _clamp(max(x0, x1)), _clamp(max(y0, y1)))
        if box[0] < box[2] and box[1] < box[3]:
            boxes.append(box)
    return boxes


def csv_line(image: str, box: Box) -> str:
    return "%s,%.4f,%.4f,%.4f,%.4f" % (image, *box)


def write_bounding_box_csv(path: os.PathLike, rows: Iterable[tuple[str, Box]]) -> int:
    """Write sorted `<image>,<xmin>,<ymin>,<xmax>,<ymax>` lines atomically; returns the number of boxes."""
    lines = sorted(csv_line(image, box) for image, box in rows)
    write_atomically(path, "".join(line + "\n" for line in lines), "the bounding box CSV")
    return len(lines)


def convert_bounding_boxes(path: Path, target: Path, synsets: frozenset[str]) -> None:
    """The XML annotations of the bbox tar at `path` (read front to back), those of `synsets`,
    -> `target`/bounding_boxes.csv."""
    rows, files, annotated = [], 0, 0
    with stream_tar(path) as tar:
        for member in tar:
            relative = safe_path(member, path.name)
            if relative is None or relative.suffix != ".xml":
                continue
            wnid = relative.parent.name or relative.name.split("_")[0]
            if wnid not in synsets:
                continue
            files += 1
            try:
                boxes = boxes_from_xml(tar.extractfile(member).read(), wnid, synsets)
            except ValueError as problem:
                log.warning("%s: skipped %s (%s)", path.name, member.name, problem)
                continue
            annotated += bool(boxes)
            rows.extend((image_name(relative.name), box) for box in boxes)
    written = write_bounding_box_csv(target / BOUNDING_BOX_CSV, rows)
    log.info("%s: %d boxes of %d annotated images (%d XML files) in %s",
             path.name, written, annotated, files, target / BOUNDING_BOX_CSV)
