"""What the ILSVRC-2012 archives are: file names, published sizes and MD5s, and how to spot a fake."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import UserError


@dataclass(frozen=True)
class Archive:
    key: str  # the --files name: train, val, devkit, bbox
    name: str  # file name on the server and on disk
    md5: str
    size: int | None  # exact bytes where published, else None


# Sizes and MD5s: docs/imagenet-facts.md, "Archives" (torchvision ARCHIVE_META,
# TFDS url_checksums/imagenet2012.txt, copies of the image-net.org download page).
BUILTIN_ARCHIVES = {
    "devkit": Archive("devkit", "ILSVRC2012_devkit_t12.tar.gz", "fa75699e90414af021442c21a62c3abf", None),
    "bbox": Archive("bbox", "ILSVRC2012_bbox_train_v2.tar.gz", "9271167e2176350e65cfe4e546f14b17", None),
    "val": Archive("val", "ILSVRC2012_img_val.tar", "29b22e2961454d5413ddabcf34fc5622", 6_744_924_160),
    "train": Archive("train", "ILSVRC2012_img_train.tar", "1d675b47d978889d74fa0da5fadfb00e", 147_897_477_120),
}
FILE_KEYS = tuple(BUILTIN_ARCHIVES)  # small ones first, so a bad login or URL shows up in seconds

HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<!--")


def parse_file_keys(text: str) -> list[str]:
    """`train,val` -> ['val', 'train'] in download order; unknown names are a UserError."""
    keys = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(keys - set(FILE_KEYS))
    if unknown or not keys:
        raise UserError(f"--files {text!r}: choose from {','.join(FILE_KEYS)}")
    return [key for key in FILE_KEYS if key in keys]


def select_archives(keys: list[str], checksums: dict[str, str] | None, checksums_file: str = "") -> tuple[Archive, ...]:
    """The archives to get; a checksums file replaces the built-in MD5s (and with them the known sizes)."""
    selected = [BUILTIN_ARCHIVES[key] for key in keys]
    if checksums is None:
        return tuple(selected)
    missing = [a.name for a in selected if a.name not in checksums]
    if missing:
        raise UserError(f"{checksums_file}: no MD5 for {missing[0]}; add a line '<md5>  {missing[0]}' or leave it out of --files")
    return tuple(replace(a, md5=checksums[a.name], size=None) for a in selected)


def looks_like_html(head: bytes) -> bool:
    """True when the first bytes of a file are a web page (a login or error page saved under a .tar name)."""
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(HTML_STARTS)
