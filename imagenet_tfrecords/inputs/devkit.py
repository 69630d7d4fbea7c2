"""Validation labels from the ILSVRC-2012 devkit.

The devkit's ground truth gives each validation image an ILSVRC2012_ID, which is not the
sorted-wnid index (docs/imagenet-facts.md, "Devkit labels"): `data/meta.mat` maps the IDs of the
1000 leaf synsets (num_children == 0) to wnids, as torchvision's parse_meta_mat does.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from pathlib import Path

from ..errors import UserError
from ..optional import require
from .folders import cannot_read
from .validation_labels import LabelSource

META_MAT = "data/meta.mat"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"


def _devkit_files(path: Path) -> dict[str, bytes]:
    """meta.mat and the ground truth from the devkit tar.gz, or from the folder it was unpacked into."""
    wanted: dict[str, bytes] = {}
    if path.is_dir():
        for relative in (META_MAT, GROUND_TRUTH):
            found = sorted(path.glob(relative)) or sorted(path.glob(f"*/{relative}"))
            if found:
                try:
                    wanted[relative] = found[0].read_bytes()
                except OSError as exc:
                    raise cannot_read(found[0], exc) from None
        return wanted
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for member in tar:
                for relative in (META_MAT, GROUND_TRUTH):
                    if member.isfile() and (member.name == relative or member.name.endswith("/" + relative)):
                        wanted[relative] = tar.extractfile(member).read()
    except FileNotFoundError:
        raise UserError(f"{path}: devkit not found; pass the right --devkit") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise UserError(f"{path}: cannot read the devkit ({exc}); get ILSVRC2012_devkit_t12.tar.gz again") from None
    return wanted


def leaf_wnids(meta_mat: bytes, label: str) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid for the leaf synsets of a devkit meta.mat."""
    scipy_io = require("scipy.io", "scipy", "--devkit")
    try:
        synsets = scipy_io.loadmat(io.BytesIO(meta_mat), squeeze_me=True)["synsets"]
        ids, wnids, children = synsets["ILSVRC2012_ID"], synsets["WNID"], synsets["num_children"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{label}: not a devkit meta.mat with a 'synsets' struct ({exc})") from None
    return {int(i): str(w) for i, w, c in zip(ids, wnids, children) if int(c) == 0}


def load_devkit_labels(path: Path) -> LabelSource:
    """The validation labels of the devkit: ground-truth IDs mapped to wnids through meta.mat."""
    path = Path(path)
    files = _devkit_files(path)
    for relative in (META_MAT, GROUND_TRUTH):
        if relative not in files:
            raise UserError(f"{path}: the devkit has no {relative}; pass ILSVRC2012_devkit_t12.tar.gz as --devkit")
    by_id = leaf_wnids(files[META_MAT], f"{path}[{META_MAT}]")
    wnids = []
    for number, line in enumerate(files[GROUND_TRUTH].decode(errors="replace").split(), 1):
        if not line.isdigit() or int(line) not in by_id:
            raise UserError(f"{path}[{GROUND_TRUTH}]:{number}: {line!r} is not the ILSVRC2012_ID of a leaf synset of meta.mat")
        wnids.append(by_id[int(line)])
    return LabelSource(str(path), wnids)
