"""Validation labels from several sources (devkit, Kaggle CSV, the validation label file): merged, and
checked against each other and against the class folders the images lie in."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from .ilsvrc_names import FLAT_VALIDATION_NAME
from .split_images import SplitImages


@dataclass(frozen=True)
class LabelSource:
    """One source of validation labels: item i is the wnid of ILSVRC2012_val_{i+1:08d}.JPEG ('' if unknown)."""

    name: str  # how a message names it: a path
    wnids: list[str]


def merged_labels(sources: list[LabelSource]) -> list[str]:
    """Each image's label from the first source that has one."""
    length = max((len(s.wnids) for s in sources), default=0)
    return [next((s.wnids[i] for s in sources if i < len(s.wnids) and s.wnids[i]), "") for i in range(length)]


def check_agreement(sources: list[LabelSource], images: SplitImages) -> None:
    """Every source that labels a validation image of `images` gives it the same wnid, and so does its class
    folder when it lies in one (`<wnid>/ILSVRC2012_val_NNNNNNNN.JPEG`, as download_imagenet.py writes it)."""
    if not sources:
        return
    for name in images.names:
        folder, _, file = name.rpartition("/")
        match = FLAT_VALIDATION_NAME.fullmatch(file)
        if not match:
            continue
        i = int(match.group(1)) - 1
        labelled = [(s.name, s.wnids[i]) for s in sources if i < len(s.wnids) and s.wnids[i]]
        for source, wnid in labelled[1:]:
            if wnid != labelled[0][1]:
                raise UserError(f"{images.where(name)}: {labelled[0][0]} says {labelled[0][1]} but {source} says {wnid}; "
                                "the validation labels disagree, pass the matching devkit or --validation_labels_file")
        if folder and labelled and labelled[0][1] != folder:
            raise UserError(f"{images.where(name)}: lies in class folder {folder} but {labelled[0][0]} says "
                            f"{labelled[0][1]}; move it to the {labelled[0][1]} folder, or pass the "
                            "--validation_labels_file (or --devkit) that matches the folders")
