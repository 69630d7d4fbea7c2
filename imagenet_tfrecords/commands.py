"""Console entry points that need more than a module's `main()` (the rest point at `main` directly)."""

from __future__ import annotations

import sys
from pathlib import Path

from . import generate

BUILD_COMMAND = "build-imagenet-data"  # [project.scripts] in pyproject.toml


def generate_tfrecord_protos() -> int:
    """`generate-tfrecord-protos`: the guided build; the command it prints runs the installed build beside it."""
    return generate.main(sys.argv[1:], Path(sys.argv[0]).with_name(BUILD_COMMAND))
