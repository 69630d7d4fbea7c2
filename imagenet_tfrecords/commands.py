"""The console commands and the four scripts: each imports its command's module, then runs its `main`.

The import takes up to half a second (NumPy, Pillow, requests). A Ctrl-C in that time, or while the
flags are read, ends the command with one line and exit code 130, as a Ctrl-C later does, instead of
Python's traceback.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BUILD_COMMAND = "build-imagenet-data"  # [project.scripts] in pyproject.toml
INTERRUPTED_AT_START = "interrupted before it started; nothing was done"


def _run(module: str, *args: object) -> int:
    """Import `module` and run its `main(*args)`; each main handles a Ctrl-C once its work begins."""
    try:
        return importlib.import_module(module, __package__).main(*args)
    except KeyboardInterrupt:  # while importing, or reading the flags: nothing was done yet
        print(INTERRUPTED_AT_START, file=sys.stderr)
        return 130


def build_imagenet_data() -> int:
    return _run(".cli")


def download_imagenet() -> int:
    return _run(".download.cli")


def purge_mem_caches() -> int:
    return _run(".host.purge")


def verify() -> int:
    return _run(".verify.command")


def generate_tfrecord_protos(build_script: Path | None = None) -> int:
    """The guided build; the command it prints runs `build_script`, by default the installed build beside it."""
    return _run(".generate", sys.argv[1:], build_script or Path(sys.argv[0]).with_name(BUILD_COMMAND))
