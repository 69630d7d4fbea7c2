"""The console commands and the four scripts: each imports its command's module, then runs its `main`.

The import takes up to half a second (NumPy, Pillow, requests). A Ctrl-C in that time, or while the
flags are read, ends the command with one line and exit code 130, as a Ctrl-C later does, instead of
Python's traceback. Also `--version` for every command, from one place: `package_version`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import shutil
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

DISTRIBUTION = "imagenet-tfrecords"  # [project] name in pyproject.toml
BUILD_COMMAND = "build-imagenet-data"  # [project.scripts] in pyproject.toml
INTERRUPTED_AT_START = "interrupted before it started; nothing was done"
# A source checkout: pyproject.toml beside the package.
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def package_version() -> str:
    """The version, whose one source is `[project] version` in pyproject.toml: read there in a source checkout
    (installed in editable mode or not, so an edit shows at once), else from the installed package's metadata,
    which was made from it."""
    try:
        project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == DISTRIBUTION:
            return str(project["version"])
    except (OSError, ValueError, KeyError):
        pass  # no checkout here: an installed wheel
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (neither installed nor a source checkout)"


class _VersionAction(argparse.Action):
    """`--version`: `PROG VERSION` on stdout, exit 0; the version is looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the command's name and version, then exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"{parser.prog} {package_version()}")
        parser.exit()


def add_version_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give `parser` the `--version` flag every command has."""
    parser.add_argument("--version", action=_VersionAction)
    return parser


def _run(module: str, *args: object) -> int:
    """Import `module` and run its `main(*args)`; each main handles a Ctrl-C once its work begins."""
    try:
        return importlib.import_module(module, __package__).main(*args)
    except KeyboardInterrupt:  # while importing, or reading the flags: nothing was done yet
        print(INTERRUPTED_AT_START, file=sys.stderr)
        return 130


def build_imagenet_data() -> int:
    return _run(".cli")


def download_imagenet(build_script: Path | None = None) -> int:
    """The download; the build command it prints at the end runs `build_script` (the script beside
    download_imagenet.py) with this Python, by default the installed `build-imagenet-data`."""
    return _run(".download.cli", None, build_command_for(build_script))


def purge_mem_caches() -> int:
    return _run(".host.purge")


def verify() -> int:
    return _run(".verify.command")


def installed_build_command() -> list[str]:
    """The installed `build-imagenet-data` as a command that runs from any folder: the one beside this
    console command (absolute), else the one on PATH (absolute), else its bare name."""
    beside = Path(os.path.abspath(sys.argv[0])).with_name(BUILD_COMMAND)
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    on_path = shutil.which(BUILD_COMMAND)
    return [os.path.abspath(on_path) if on_path else BUILD_COMMAND]


def script_build_command(script: Path) -> list[str]:
    """`build_imagenet_data.py` of a checkout as a command that runs from any folder: this Python, the script's
    absolute path."""
    return [sys.executable, os.path.abspath(script)]


def build_command_for(build_script: Path | None) -> list[str]:
    """The build command another command prints: `build_script` run by this Python, else the installed one."""
    return script_build_command(build_script) if build_script else installed_build_command()


def generate_tfrecord_protos(build_script: Path | None = None) -> int:
    """The guided build; the command it prints runs `build_script` (the script beside
    generate_tfrecord_protos.py) with this Python, by default the installed `build-imagenet-data`."""
    return _run(".generate", sys.argv[1:], build_command_for(build_script))
