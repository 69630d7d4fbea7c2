"""The ILSVRC-2012 file names that every layout, and the downloader's unpacking, recognise."""

from __future__ import annotations

import re

CLASS_ARCHIVE = re.compile(r"(n\d{8})\.tar")  # one class of the train tar: `<wnid>.tar`
FLAT_VALIDATION_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")  # validation image N (from 1) of the val tar
