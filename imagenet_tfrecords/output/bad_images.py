"""bad_images.tsv: the images a build left out (`--skip_bad_images`), with why, one row each."""

from __future__ import annotations

from ..storage.folders import Folder
from .manifest import BAD_IMAGES_REPORT, Manifest


def write_bad_image_report(output: Folder, manifest: Manifest) -> None:
    """bad_images.tsv: every image left out of the directory's shards, of every split built into it."""
    rows = sorted((split, bad.path, bad.reason) for split in manifest.splits for bad in manifest.bad_images(split))
    if not rows:
        output.remove([BAD_IMAGES_REPORT])
        return
    lines = [("split", "path", "reason"), *rows]
    text = "".join("\t".join(map(_tsv_field, row)) + "\n" for row in lines)
    output.write(BAD_IMAGES_REPORT, text, "the bad image report")


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _tsv_field(value: str) -> str:
    """A field of a tab-separated row: backslash, tab and line breaks escaped (a name may hold them);
    other bytes, UTF-8 or not, kept as the file system gives them."""
    return value.translate(_TSV_ESCAPES)
