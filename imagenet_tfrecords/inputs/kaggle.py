"""The Kaggle ImageNet layout (docs/imagenet-facts.md, "The Kaggle layout"), built in place with no files moved.

    <root>/ILSVRC/Data/CLS-LOC/train/<wnid>/*.JPEG      a class tree like any other
    <root>/ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_*.JPEG flat; labelled by LOC_val_solution.csv
    <root>/LOC_synset_mapping.txt                       `<wnid> <names>`, line order = class order
    <root>/LOC_val_solution.csv                         ImageId,PredictionString (`wnid x0 y0 x1 y1 ...`)
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from ..errors import UserError
from ..storage.urls import is_url
from .folders import resolve
from .ilsvrc_names import FLAT_VALIDATION_NAME
from .labels import read_text
from .validation_labels import LabelSource

log = logging.getLogger(__name__)

DATA_DIR = Path("ILSVRC", "Data", "CLS-LOC")
SYNSET_MAPPING = "LOC_synset_mapping.txt"
VALIDATION_SOLUTION = "LOC_val_solution.csv"


def split_dirs(root: Path) -> tuple[Path | None, Path | None]:
    """The train and val folders of a Kaggle root (None where absent); a UserError if it is not one."""
    data = Path(root) / DATA_DIR
    if not data.is_dir():
        raise UserError(f"{root}: not the Kaggle ImageNet layout (no {DATA_DIR}/); pass the folder holding ILSVRC/ "
                        f"and {SYNSET_MAPPING}")
    train, val = data / "train", data / "val"
    if not train.is_dir() and not val.is_dir():
        raise UserError(f"{data}: holds neither train/ nor val/; is the Kaggle archive fully unpacked?")
    return (train if train.is_dir() else None), (val if val.is_dir() else None)


def find_root(split_dir: Path | str | None) -> Path | None:
    """The Kaggle root above `<root>/ILSVRC/Data/CLS-LOC/<split>`, when `split_dir` is such a folder (not a URL)."""
    if split_dir is None or is_url(split_dir):
        return None
    path = resolve(split_dir)
    if len(path.parents) > 3 and path.parent.relative_to(path.parents[3]) == DATA_DIR:
        return path.parents[3]
    return None


def check_synset_mapping(root: Path, wnids: tuple[str, ...]) -> None:
    """LOC_synset_mapping.txt must list the labels file's synsets in the same order (its order is the class index)."""
    path = Path(root) / SYNSET_MAPPING
    if not path.is_file():
        log.warning("%s: not found; class order taken from the labels file alone", path)
        return
    listed = [line.split(maxsplit=1)[0] for line in read_text(path, "Kaggle synset mapping").splitlines() if line.strip()]
    wanted = set(wnids)
    missing = sorted(wanted - set(listed))
    if missing:
        raise UserError(f"{path}: does not list {missing[0]} of the labels file; pass the matching --labels_file")
    for position, (mapped, labelled) in enumerate(zip((w for w in listed if w in wanted), wnids)):
        if mapped != labelled:
            raise UserError(f"{path}: class {position} is {mapped} but the labels file has {labelled}; "
                            "pass a --labels_file in the same order")


def load_validation_solution(root: Path) -> LabelSource | None:
    """Labels from LOC_val_solution.csv: the first wnid of each PredictionString; None without the file."""
    path = Path(root) / VALIDATION_SOLUTION
    if not path.is_file():
        log.warning("%s: not found; validation labels come from the validation label file", path)
        return None
    by_number: dict[int, str] = {}
    for number, row in enumerate(csv.reader(read_text(path, "Kaggle validation solution").splitlines()), 1):
        if number == 1 or not row:
            continue
        match = FLAT_VALIDATION_NAME.fullmatch(f"{row[0]}.JPEG")
        if len(row) != 2 or not match or not row[1].split():
            raise UserError(f"{path}:{number}: expected 'ILSVRC2012_val_NNNNNNNN,<wnid> <box> ...', got {','.join(row)!r}")
        by_number[int(match.group(1))] = row[1].split()[0]
    wnids = [""] * max(by_number, default=0)
    for number, wnid in by_number.items():
        wnids[number - 1] = wnid
    return LabelSource(str(path), wnids)
