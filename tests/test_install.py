"""The package as a user installs it: the wheel in a fresh virtualenv (no TensorFlow, no DALI, no Dask) for
every Python that requires-python claims and this machine has, its console commands run from outside the
checkout; the records read back here with TensorFlow."""

from __future__ import annotations

from pathlib import Path

import pexpect
import pytest
from tfread import read_split

from imagenet_tfrecords.sample import SAMPLE_WNIDS, TRAIN_PER_CLASS, VALIDATION_PER_CLASS
from test_bad_input import assert_one_line_error
from test_generate import FITTED, PROMPTS
from installed import PYTHONS, THIS_PYTHON, clean_env, run

COMMANDS = ("build-imagenet-data", "download-imagenet", "generate-tfrecord-protos", "purge-mem-caches",
            "imagenet-tfrecords-verify")
SAMPLE_SHARDS = ["train-00000-of-00004", "train-00001-of-00004", "train-00002-of-00004", "train-00003-of-00004",
                 "validation-00000-of-00002", "validation-00001-of-00002"]
ABSENT = ("tensorflow", "nvidia.dali", "distributed")  # test-only, and the --scheduler extra
FEATURE_ONLY = ("cv2", "scipy", "skimage", "tifffile")  # imported only where their feature runs, not at start
OPEN_QUESTIONS = (PROMPTS[0], PROMPTS[2])  # no default in brackets: the data folder, and the labels file (Enter: none)


@pytest.fixture(scope="module")
def sample_build(venvs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """README's quick start with the installed command, run with this Python's venv from outside the checkout."""
    bin_dir, where = venvs(THIS_PYTHON), tmp_path_factory.mktemp("elsewhere")
    run([bin_dir / "build-imagenet-data", "--sample", where / "sample", "--resize_images"], cwd=where)
    return where / "sample"


def sorted_shards(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*-of-*"))


@pytest.mark.parametrize("python", PYTHONS)
def test_the_wheel_installs_and_builds_the_sample(python: str, venvs, tmp_path: Path) -> None:
    """Every claimed Python: the wheel installs without TensorFlow, DALI or Dask, the builder starts without
    importing what only one feature needs, every command runs, and the sample builds and verifies."""
    bin_dir = venvs(python)
    found = run([bin_dir / "python", "-c", "import importlib.util as u, sys, imagenet_tfrecords.cli as cli; "
                 "print(cli.__file__); "
                 f"print([m for m in {ABSENT!r} if u.find_spec(m.split('.')[0])]); "
                 f"print([m for m in {FEATURE_ONLY!r} if m in sys.modules])"], cwd=tmp_path)
    location, absent_found, imported_at_start = found.stdout.splitlines()
    assert Path(location).is_relative_to(bin_dir.parent) and absent_found == "[]" and imported_at_start == "[]"
    for command in COMMANDS:
        assert run([bin_dir / command, "--help"], cwd=tmp_path).stdout.startswith("usage: ")
    run([bin_dir / "build-imagenet-data", "--sample", tmp_path / "sample"], cwd=tmp_path)
    assert sorted_shards(tmp_path / "sample" / "tfrecords") == SAMPLE_SHARDS
    run([bin_dir / "imagenet-tfrecords-verify", tmp_path / "sample" / "tfrecords", "--deep"], cwd=tmp_path)


def test_the_installed_sample_build_reads_back_with_tensorflow(venvs, sample_build: Path) -> None:
    """The shipped metadata (package data) labels the records; the package's own --verify passes them."""
    output = sample_build / "tfrecords"
    verified = run([venvs(THIS_PYTHON) / "build-imagenet-data", "--verify", output], cwd=sample_build)
    assert "Traceback" not in verified.stderr
    train, validation = read_split(output, "train"), read_split(output, "validation")
    assert (len(train), len(validation)) == (TRAIN_PER_CLASS * 5, VALIDATION_PER_CLASS * 5)
    assert {r["image/class/synset"] for r in train + validation} == set(SAMPLE_WNIDS)
    assert {(r["image/height"], r["image/width"]) for r in train} == {(256, 256)}
    assert {r["image/class/text"] for r in train if r["image/class/synset"] == "n01440764"} == {"tench, Tinca tinca"}


def test_the_installed_guided_build_in_a_terminal(venvs, sample_build: Path, tmp_path: Path) -> None:
    """generate-tfrecord-protos in a real pty, every default taken, no shard flags: the shard counts fit the sample."""
    bin_dir, output = venvs(THIS_PYTHON), tmp_path / "guided"
    answers = {PROMPTS[0]: str(sample_build / "raw"), PROMPTS[1]: str(output)}
    child = pexpect.spawn(str(bin_dir / "generate-tfrecord-protos"), ["--min_free_gb", "0"], cwd=str(tmp_path),
                          env={**clean_env(), "PYTHONUNBUFFERED": "1"}, encoding="utf-8", timeout=120,
                          dimensions=(50, 400))
    for question in PROMPTS:
        child.expect_exact(question)
        child.expect_exact("? " if question in OPEN_QUESTIONS else "] ")
        child.sendline(answers.get(question, ""))
    child.expect_exact("running: ")
    child.expect_exact("\r\n")
    assert "build-imagenet-data" in child.before
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert sorted_shards(output) == FITTED
    assert len(read_split(output, "train")) == TRAIN_PER_CLASS * 5
    run([bin_dir / "build-imagenet-data", "--verify", output], cwd=tmp_path)


def test_a_missing_optional_package_is_one_line(venvs, sample_build: Path, tmp_path: Path) -> None:
    """--scheduler without Dask installed (the wheel's `dask` extra): one line saying what to install."""
    result = run([venvs(THIS_PYTHON) / "build-imagenet-data", "--train_directory", sample_build / "raw" / "train",
                  "--output_directory", tmp_path / "out", "--train_shards", "2", "--scheduler", "tcp://127.0.0.1:1"], cwd=tmp_path, check=False)
    assert_one_line_error(result, "install dask[distributed] for --scheduler", "pip install 'dask[distributed]'")
    assert not sorted_shards(tmp_path / "out")
