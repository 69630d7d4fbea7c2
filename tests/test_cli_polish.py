"""Issue 19, items 4 to 6, as a user meets them: the command generate_tfrecord_protos.py prints runs from any folder,
every command has `--version`, a bare build says what to do, a failed run leaves no lock behind, the bucket hint
names the extra, and the verify command is named as it was run."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import REPO, run_build_cli
from installed import THIS_PYTHON
from test_bad_input import assert_one_line_error, make_tree

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]  # the one source
SCRIPTS = ("build_imagenet_data.py", "download_imagenet.py", "generate_tfrecord_protos.py", "purge_mem_caches.py")
CONSOLE = ("build-imagenet-data", "download-imagenet", "generate-tfrecord-protos", "purge-mem-caches",
           "imagenet-tfrecords-verify")
VERIFY_MODULE = "python -m imagenet_tfrecords.verify"
TIMEOUT = 120


@pytest.fixture(scope="module")
def installed(venvs) -> Path:
    """The bin/ of a fresh virtualenv with the wheel installed: the console commands as a user has them."""
    return venvs(THIS_PYTHON)


def run(argv: list[str | Path], cwd: Path = REPO, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **kwargs.pop("env", {})}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=TIMEOUT, check=False, **kwargs)


def summary_rows(stdout: str) -> dict[str, tuple[int, int, int, int]]:
    """split -> (images, written, shards, resumed), from the summary table a build prints."""
    rows = {}
    for line in stdout.splitlines():
        words = line.split()
        if words and words[0] in ("train", "validation") and len(words) == 7:
            rows[words[0]] = tuple(int(w) for w in words[1:5])
    return rows


# --- item 4: the printed command is absolute and quoted, so it runs from any folder -------------------------

@pytest.mark.parametrize(("how", "where"), [("script", "the checkout"), ("script", "another folder"),
                                            ("console command", "another folder")])
def test_the_printed_command_runs_as_printed_from_another_folder(how: str, where: str, sample, tmp_path: Path,
                                                                  request: pytest.FixtureRequest) -> None:
    """Run from the checkout (where a relative script path would still work) or elsewhere, with relative answers;
    the command printed runs, pasted as it is, from yet another folder, and is the same build (all resumed)."""
    data = tmp_path / "raw data"  # a space: the command must quote it
    shutil.copytree(sample.root, data)
    here, elsewhere = (REPO if where == "the checkout" else tmp_path / "here"), tmp_path / "elsewhere"
    here.mkdir(exist_ok=True)
    elsewhere.mkdir()
    output = tmp_path / "out"
    generate = ([sys.executable, REPO / "generate_tfrecord_protos.py"] if how == "script"
                else [request.getfixturevalue("installed") / "generate-tfrecord-protos"])
    result = run([*generate, "--data_dir", os.path.relpath(data, here), "--output_directory",
                  os.path.relpath(output, here), "--yes", "--no_resize", "--train_shards", "2",
                  "--validation_shards", "1", "--num_threads", "1", "--min_free_gb", "0"], cwd=here)
    assert result.returncode == 0, result.stderr
    command = next(line for line in result.stdout.splitlines() if line.startswith("running: "))[len("running: "):]
    argv = shlex.split(command)
    if how == "script":
        assert argv[:2] == [sys.executable, str(REPO / "build_imagenet_data.py")]
    else:
        assert argv[0] == str(request.getfixturevalue("installed") / "build-imagenet-data")  # absolute path
    assert argv[argv.index("--train_directory") + 1] == str(data / "train")  # absolute, with its space
    assert argv[argv.index("--output_directory") + 1] == str(output)
    again = subprocess.run(["sh", "-c", command], cwd=elsewhere, env={**os.environ, "PATH": "/usr/bin:/bin"},
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert again.returncode == 0, again.stderr
    assert summary_rows(again.stdout) == {"train": (100, 0, 2, 2), "validation": (20, 0, 1, 1)}  # the same build
    assert not any(elsewhere.iterdir())


# --- item 5: --version everywhere, from one place; a bare build says what to do ----------------------------

@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_prints_its_name_and_version(script: str, tmp_path: Path) -> None:
    result = run([sys.executable, REPO / script, "--version"], cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{script} {VERSION}\n", "")


@pytest.mark.parametrize("name", CONSOLE)
def test_every_console_command_prints_its_name_and_version(name: str, installed: Path, tmp_path: Path) -> None:
    result = run([installed / name, "--version"], cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{name} {VERSION}\n", "")


def test_the_verify_module_prints_its_name_and_version(tmp_path: Path) -> None:
    result = run([sys.executable, "-m", "imagenet_tfrecords.verify", "--version"], cwd=tmp_path,
                 env={"PYTHONPATH": str(REPO)})
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{VERIFY_MODULE} {VERSION}\n", "")


def test_an_installed_copy_without_the_checkout_reads_the_package_metadata(tmp_path: Path) -> None:
    """Away from pyproject.toml (a wheel in site-packages), the version is the installed metadata's."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "imagenet_tfrecords", site / "imagenet_tfrecords",
                    ignore=shutil.ignore_patterns("__pycache__"))
    info = site / "imagenet_tfrecords-9.8.7.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: imagenet-tfrecords\nVersion: 9.8.7\n")
    result = run([sys.executable, "-m", "imagenet_tfrecords.verify", "--version"], cwd=tmp_path,
                 env={"PYTHONPATH": str(site)})
    assert (result.returncode, result.stdout) == (0, f"{VERIFY_MODULE} 9.8.7\n"), result.stderr


def test_the_installed_metadata_agrees_with_pyproject(installed: Path, tmp_path: Path) -> None:
    """The wheel's metadata is made from pyproject's version: the two sources --version reads agree."""
    result = run([installed / "python", "-c", "import importlib.metadata as m; print(m.version('imagenet-tfrecords'))"],
                 cwd=tmp_path)
    assert result.stdout.strip() == VERSION, result.stderr


def test_a_bare_build_prints_the_usage_and_points_to_the_sample(tmp_path: Path) -> None:
    result = run([sys.executable, REPO / "build_imagenet_data.py"], cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: build_imagenet_data.py [-h] [--version]")
    assert result.stderr.splitlines()[-1] == (
        "build_imagenet_data.py: error: nothing to do: pass --train_directory/--validation_directory "
        "(or --train_tar/--validation_tar, or --kaggle_root) and --output_directory, or try "
        "`build_imagenet_data.py --sample` for the built-in sample")
    assert list(tmp_path.iterdir()) == []


# --- item 6: a failed run leaves nothing behind; the bucket hint; verify's name ----------------------------

def test_a_failed_first_run_into_a_new_folder_leaves_no_folder(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()  # nothing usable: the scan fails after the output and idx/ were locked
    output = tmp_path / "new" / "out"
    result = run_build_cli("--train_directory", tmp_path / "train", "--output_directory", output, check=False)
    assert_one_line_error(result, f"error: {tmp_path / 'train'}: the train split has no images")
    assert not (tmp_path / "new").exists()


def test_a_failed_first_run_into_an_empty_folder_leaves_it_empty(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    output = tmp_path / "out"
    output.mkdir()
    result = run_build_cli("--train_directory", tmp_path / "train", "--output_directory", output, check=False)
    assert_one_line_error(result, "the train split has no images")
    assert list(output.iterdir()) == []  # no .lock, no idx/ holding only its .lock


def test_a_run_that_fails_mid_build_leaves_no_lock(sample, tmp_path: Path) -> None:
    train = make_tree(sample, tmp_path / "train")
    truncated = min(train.glob("*/*.JPEG"))
    truncated.write_bytes(truncated.read_bytes()[:300])
    output, indexes = tmp_path / "out", tmp_path / "indexes"
    result = run_build_cli("--train_directory", train, "--output_directory", output, "--index_directory", indexes,
                           "--train_shards", "1", "--num_threads", "1", check=False)
    assert_one_line_error(result, str(truncated))
    assert not list(output.rglob(".lock")) and not indexes.exists()


def test_a_finished_build_leaves_no_lock(resized_build: Path) -> None:
    assert sorted(p.relative_to(resized_build) for p in resized_build.rglob(".lock")) == []
    assert (resized_build / "manifest.json").is_file() and len(list((resized_build / "idx").iterdir())) == 6


NO_S3FS = """
import sys

class NoS3fs:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "s3fs":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoS3fs())
"""


def test_a_missing_s3fs_names_the_extra_to_install(sample, tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(NO_S3FS)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    result = run([sys.executable, REPO / "build_imagenet_data.py", "--train_directory", sample.train_dir,
                  "--output_directory", "s3://bucket/out", "--num_threads", "1"], env=env)
    assert_one_line_error(result)
    assert result.stderr.strip() == (
        'error: s3://bucket/out: install s3fs for s3:// (pip install "imagenet-tfrecords[buckets]"; '
        "in a source checkout: pip install -r requirements-buckets.txt)")


@pytest.mark.parametrize("how", ["module", "console command"])
def test_verify_is_named_as_it_was_run(how: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if how == "module":
        command, name = [sys.executable, "-m", "imagenet_tfrecords.verify"], VERIFY_MODULE
    else:
        command = [request.getfixturevalue("installed") / "imagenet-tfrecords-verify"]
        name = "imagenet-tfrecords-verify"
    env = {"PYTHONPATH": str(REPO)}
    shown = run([*command, "--help"], cwd=tmp_path, env=env)
    assert shown.returncode == 0 and shown.stdout.startswith(f"usage: {name} [-h]"), shown.stdout
    missing = run(command, cwd=tmp_path, env=env)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.splitlines()[-1] == f"{name}: error: the following arguments are required: directory"
