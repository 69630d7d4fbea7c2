"""The package installed as a user installs it: the wheel, built once a test session, in a fresh virtualenv per
Python (`venvs`), with the environment of a user who installed nothing else (`clean_env`, `run`). Loaded by
conftest's pytest_plugins, so every test module shares the one wheel and its virtualenvs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def claimed_versions() -> range:
    """The minor versions of Python 3 that pyproject.toml's requires-python (">=3.A,<3.B") claims."""
    claim = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    lowest, beyond = re.fullmatch(r">=3\.(\d+),<3\.(\d+)", claim).groups()
    return range(int(lowest), int(beyond))


def interpreters() -> dict[str, str]:
    """'3.N (path)' -> interpreter, for every distinct Python on this machine whose version is claimed: the one
    running the tests, the system's python3 (Debian's own here), python3.N on PATH, and pyenv's."""
    candidates = [sys._base_executable, "/usr/bin/python3"]
    candidates += [found for minor in claimed_versions() if (found := shutil.which(f"python3.{minor}"))]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/*/bin/python3"))
    found: dict[str, str] = {}
    for candidate in candidates:
        try:
            answer = subprocess.run([candidate, "-c", "import os, sys; print(sys.version_info[1], "
                                     "os.path.realpath(sys.executable))"], capture_output=True, text=True, timeout=30)
        except OSError:  # not on this machine
            continue
        if answer.returncode == 0:  # a pyenv shim of a version not selected fails here
            minor, real = answer.stdout.split(maxsplit=1)
            if int(minor) in claimed_versions():
                found.setdefault(f"3.{minor} ({real.strip()})", candidate)
    return found


PYTHONS = interpreters()
THIS_PYTHON = next(name for name, path in PYTHONS.items() if path == sys._base_executable)


def clean_env() -> dict[str, str]:
    """The environment of a user who only installed the wheel: nothing pointing at this checkout or venv."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "IMAGENET_DATA_DIR",
                                                              "PROTO_OUT_DIR", "container")}


def run(command: list[str | Path], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=clean_env(), capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of what it is made of (building in place would leave build/ and
    *.egg-info in the checkout, and could pick up files that are not part of the project)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    shutil.copytree(REPO / "imagenet_tfrecords", source / "imagenet_tfrecords",
                    ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", dist, source], cwd=dist)
    return next(dist.glob("imagenet_tfrecords-*.whl"))


@pytest.fixture(scope="session")
def venvs(wheel: Path, tmp_path_factory: pytest.TempPathFactory):
    """A factory: a fresh virtualenv of one Python with only the wheel and its dependencies (at the versions of
    requirements.txt) installed; its bin/. Made once per Python for the whole session."""
    made: dict[str, Path] = {}

    def venv(python: str) -> Path:
        if python not in made:
            where = tmp_path_factory.mktemp("venv")
            run([PYTHONS[python], "-m", "venv", where], cwd=where)
            run([where / "bin" / "python", "-m", "pip", "install", "--quiet", wheel, "--constraint",
                 REPO / "requirements.txt"], cwd=where)
            made[python] = where / "bin"
        return made[python]

    return venv
