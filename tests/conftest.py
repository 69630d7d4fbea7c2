"""Shared fixtures: the built-in sample, the real CLI, and reading shards back with TensorFlow."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagenet_tfrecords.output.manifest import read_manifest
from imagenet_tfrecords.sample import Sample, make_sample

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The s3_server and gcs_server fixtures, for every test module; loaded here, before any test imports gcsfs.
# `venvs`: the wheel installed in a fresh virtualenv, made once for the session.
pytest_plugins = ["object_stores", "installed"]


def run_build_cli(*args: str | Path, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run `python build_imagenet_data.py ARGS` as a user would."""
    result = subprocess.run(
        [sys.executable, str(REPO / "build_imagenet_data.py"), *map(str, args)],
        cwd=kwargs.pop("cwd", REPO), capture_output=True, text=True, **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"build failed ({result.returncode}):\n{result.stderr}")
    return result


def finished_shards(output: Path) -> list[str]:
    """Shards recorded as complete so far: in the output's manifest.json or its journal."""
    try:
        return list(read_manifest(output)["shards"])
    except (FileNotFoundError, ValueError):
        return []


def kill_build_after_first_train_shard(args: list, output: Path) -> list[str]:
    """Start a real build, SIGKILL its whole process group once a train shard is done; the shards done then."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "build_imagenet_data.py"), *map(str, args)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not any(name.startswith("train") for name in finished_shards(output)):
        assert process.poll() is None, "the build ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return finished_shards(output)


def sample_args(sample: Sample, output: Path, *extra: str | Path) -> list[str | Path]:
    return [
        "--train_directory", sample.train_dir, "--validation_directory", sample.validation_dir,
        "--bounding_box_file", sample.bounding_box_file, "--output_directory", output,
        "--train_shards", "4", "--validation_shards", "2", *extra,
    ]


def every_file(directory: Path) -> dict[str, str]:
    """SHA-256 of every file a build left in `directory` and below: shards, indexes, manifest, JSON descriptions."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def shard_digests(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if "-of-" in p.name and not p.name.startswith(".")
    }


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return make_sample(tmp_path_factory.mktemp("sample") / "raw")


@pytest.fixture(scope="session")
def resized_build(sample: Sample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample built as README shows: resized to 256x256, q90, two workers."""
    output = tmp_path_factory.mktemp("resized")
    run_build_cli(*sample_args(sample, output, "--resize_images", "--num_threads", "2"))
    return output


@pytest.fixture(scope="session")
def copy_build(sample: Sample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample built without resizing (copy mode)."""
    output = tmp_path_factory.mktemp("copy")
    run_build_cli(*sample_args(sample, output, "--num_threads", "2"))
    return output
