"""The scan at the edges: misfiled validation images, entries not taken, links, odd names, odd tars.

Every input is a real file of its kind made here (links, loops, sparse files, names that are not
UTF-8 or hold a newline, tars packed with the `tar` command), built with the real CLI and read
back with tf.data.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import tensorflow as tf

from conftest import run_build_cli, shard_digests
from ilsvrc_archives import make_kaggle_tree
from imagenet_tfrecords.inputs.labels import DEFAULT_VALIDATION_LABELS_FILE, load_validation_labels
from imagenet_tfrecords.sample import SAMPLE_WNIDS, make_sample_tarballs
from test_bad_input import WNIDS, assert_one_line_error, make_tree
from tfread import INCEPTION_FEATURES, shard_files

PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2  # linux/prctl.h, linux/capability.h
LABELS = load_validation_labels(DEFAULT_VALIDATION_LABELS_FILE)


def records(output: Path, split: str) -> list[dict]:
    """Each record's filename (the raw bytes) and synset, read with tf.data."""
    wanted = {key: INCEPTION_FEATURES[key] for key in ("image/filename", "image/class/synset")}
    return [{key: value.numpy() for key, value in tf.io.parse_single_example(serialized, wanted).items()}
            for serialized in tf.data.TFRecordDataset(shard_files(output, split))]


def filenames(output: Path, split: str) -> list[bytes]:
    return sorted(record["image/filename"] for record in records(output, split))


def build(output: Path, *args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    return run_build_cli(*args, "--output_directory", output, "--train_shards", "2", "--validation_shards", "2",
                         "--num_threads", "1", check=False, **kwargs)


def succeeded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def pack(folder: Path, archive: Path, *options: str) -> Path:
    """`tar -C folder -cf archive .`: every member named `./...`, the folder itself as `./`."""
    subprocess.run(["tar", *options, "-C", str(folder), "-cf", str(archive), "."], check=True)
    return archive


def pack_train(train: Path, work: Path, *options: str) -> Path:
    """The tree as an ILSVRC train tar (one `<wnid>.tar` per class), packed as `tar -C DIR -cf X.tar .` does."""
    (work / "classes").mkdir(parents=True)
    for folder in sorted(train.iterdir()):
        pack(folder, work / "classes" / f"{folder.name}.tar", *options)
    return pack(work / "classes", work / "train.tar")


def ignored_line(result: subprocess.CompletedProcess, split: str) -> str:
    """The warning about entries not taken; it must be the summary's line as well."""
    warned = [line.split(" ", 1)[1] for line in result.stderr.splitlines() if f" {split}: ignored " in line]
    assert len(warned) == 1, result.stderr
    assert warned[0] in result.stdout.splitlines()
    return warned[0]


# Validation in class folders (as download_imagenet.py writes it) is checked against the labels.

def validation_tree(sample, root: Path) -> Path:
    """The sample's validation images filed as validation/<wnid>/ by the shipped label file."""
    for path in sorted(sample.validation_dir.iterdir()):
        wnid = LABELS[int(path.stem.rsplit("_", 1)[1]) - 1]
        (root / wnid).mkdir(parents=True, exist_ok=True)
        os.link(path, root / wnid / path.name)
    return root


def test_validation_class_folders_agreeing_with_the_labels_build(sample, tmp_path: Path) -> None:
    validation = validation_tree(sample, tmp_path / "validation")
    succeeded(build(tmp_path / "out", "--validation_directory", validation))
    labelled = {record["image/filename"].decode(): record["image/class/synset"].decode()
                for record in records(tmp_path / "out", "validation")}
    assert len(labelled) == 20
    assert all(LABELS[int(name[15:23]) - 1] == wnid for name, wnid in labelled.items())


@pytest.fixture(scope="module")
def devkit(sample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sample_tarballs(sample, tmp_path_factory.mktemp("tars")).devkit


@pytest.mark.parametrize("with_devkit", [False, True], ids=["label file", "devkit"])
def test_a_misfiled_validation_image_is_an_error(sample, devkit: Path, tmp_path: Path, with_devkit: bool) -> None:
    validation = validation_tree(sample, tmp_path / "validation")
    image = sorted((validation / SAMPLE_WNIDS[0]).iterdir())[0]
    os.replace(image, validation / SAMPLE_WNIDS[1] / image.name)
    result = build(tmp_path / "out", "--validation_directory", validation, *(["--devkit", devkit] if with_devkit else []))
    assert_one_line_error(result, f"{validation / SAMPLE_WNIDS[1] / image.name}: lies in class folder {SAMPLE_WNIDS[1]} "
                          f"but {devkit if with_devkit else DEFAULT_VALIDATION_LABELS_FILE} says {SAMPLE_WNIDS[0]}")
    assert not shard_files(tmp_path / "out", "validation")


def test_devkit_and_label_file_are_checked_on_class_folder_names(sample, devkit: Path, tmp_path: Path) -> None:
    validation = validation_tree(sample, tmp_path / "validation")
    image = sorted((validation / SAMPLE_WNIDS[0]).iterdir())[0]
    number = int(image.stem.rsplit("_", 1)[1])
    wrong = tmp_path / "labels.txt"
    wrong.write_text("\n".join(LABELS[: number - 1] + [SAMPLE_WNIDS[1]] + LABELS[number:]) + "\n")
    result = build(tmp_path / "out", "--validation_directory", validation, "--devkit", devkit,
                   "--validation_labels_file", wrong)
    assert_one_line_error(result, f"{image}: {devkit} says {SAMPLE_WNIDS[0]} but {wrong} says {SAMPLE_WNIDS[1]}")


# Entries the scan does not take are counted and named; a tar reports the same ones.

def add_entries_not_taken(train: Path) -> None:
    """A nested folder holding an image, a folder named like an image, a text file and a hidden image."""
    wnid = train / WNIDS[0]
    image = sorted(wnid.iterdir())[0]
    (wnid / "extra").mkdir()
    shutil.copy(image, wnid / "extra" / f"{WNIDS[0]}_5.JPEG")
    (wnid / "folder.JPEG").mkdir()
    (wnid / "notes.txt").write_text("not an image")
    shutil.copy(image, wnid / ".hidden.JPEG")


def test_entries_not_taken_are_counted_and_named(sample, tmp_path: Path) -> None:
    train = make_tree(sample, tmp_path / "train")
    taken = sorted(p.name.encode() for p in train.glob("*/*.JPEG"))
    add_entries_not_taken(train)
    (train / WNIDS[1] / "gone.JPEG").symlink_to("nowhere.JPEG")
    result = succeeded(build(tmp_path / "out", "--train_directory", train))
    assert ignored_line(result, "train") == (
        "train: ignored 5 entries that are not image files (other files, hidden files, folders inside a class, "
        f"links to nothing), e.g. {train / WNIDS[0] / '.hidden.JPEG'}")
    assert filenames(tmp_path / "out", "train") == taken


def test_dot_slash_tars_with_folders_build_the_tree_bytes(sample, tmp_path: Path) -> None:
    """`tar -C DIR -cf X.tar .` names members `./...` and adds folder members: same plan, same bytes."""
    train = make_tree(sample, tmp_path / "train")
    add_entries_not_taken(train)
    tree = succeeded(build(tmp_path / "tree", "--train_directory", train, "--validation_directory", sample.validation_dir))
    train_tar = pack_train(train, tmp_path / "tars")
    validation_tar = pack(sample.validation_dir, tmp_path / "tars" / "val.tar")
    tars = succeeded(build(tmp_path / "from_tars", "--train_tar", train_tar, "--validation_tar", validation_tar))
    assert len(shard_digests(tmp_path / "tree")) == 4
    assert shard_digests(tmp_path / "from_tars") == shard_digests(tmp_path / "tree")
    assert ignored_line(tars, "train") == ignored_line(tree, "train").replace(f"{train}/", f"{train_tar}[") + "]"
    assert "validation: ignored" not in tars.stdout + tree.stdout


# Links: duplicates across classes, loops.

@pytest.mark.parametrize("link", ["class folder", "file"])
def test_the_same_image_under_two_classes_is_an_error(sample, tmp_path: Path, link: str) -> None:
    train = make_tree(sample, tmp_path / "train")
    first = sorted((train / WNIDS[0]).iterdir())[0]
    if link == "class folder":
        (train / "n01443537").symlink_to(WNIDS[0])
        twin = train / "n01443537" / first.name
    else:
        twin = train / WNIDS[1] / "twin.JPEG"
        twin.symlink_to(f"../{WNIDS[0]}/{first.name}")
    result = build(tmp_path / "out", "--train_directory", train)
    assert_one_line_error(result, f"{first} and {twin} are the same file (a link), so it would be stored under two labels")


@pytest.mark.parametrize("loop", ["file", "class folder"])
def test_a_symbolic_link_loop_is_one_line(sample, tmp_path: Path, loop: str) -> None:
    train = make_tree(sample, tmp_path / "train")
    looping = train / WNIDS[0] / "loop.JPEG" if loop == "file" else train / "n01443537"
    looping.symlink_to(looping.name)
    assert_one_line_error(build(tmp_path / "out", "--train_directory", train), f"{looping}: a symbolic link loop")


def without_root_file_access() -> None:
    """Drop root's power to read any file (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from the child's
    capability bounding set, so a folder's permission bits hold for it. (Running as another user
    would not do here: the interpreter lives under /root.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_an_unreadable_class_folder_is_one_line(sample, tmp_path: Path) -> None:
    train = make_tree(sample, tmp_path / "train")
    (train / WNIDS[1]).chmod(0)
    try:
        result = build(tmp_path / "out", "--train_directory", train, preexec_fn=without_root_file_access)
    finally:
        (train / WNIDS[1]).chmod(0o755)
    assert_one_line_error(result, f"{train / WNIDS[1]}: cannot read it (Permission denied)")
    assert not shard_files(tmp_path / "out", "train")
    succeeded(build(tmp_path / "out", "--train_directory", train, preexec_fn=without_root_file_access))


# Names that are not UTF-8, or hold a newline: the record keeps the bytes; the tar (and its kept index) agree.

@pytest.mark.parametrize("odd", [b"\xff\xfe", b"\n"], ids=["not UTF-8", "newline"])
def test_odd_names_keep_their_bytes_from_tree_and_tar(sample, tmp_path: Path, odd: bytes) -> None:
    train = make_tree(sample, tmp_path / "train")
    image = sorted((train / WNIDS[0]).iterdir())[0]
    odd_name = f"{WNIDS[0]}_{os.fsdecode(odd)}.JPEG"
    os.rename(image, train / WNIDS[0] / odd_name)
    (train / WNIDS[1] / f"notes{os.fsdecode(odd)}.txt").write_text("not an image")
    tree = succeeded(build(tmp_path / "tree", "--train_directory", train))
    assert os.fsencode(odd_name) in filenames(tmp_path / "tree", "train")
    shown = {b"\xff\xfe": "notes\\xff\\xfe.txt", b"\n": "notes\\n.txt"}[odd]
    assert ignored_line(tree, "train").endswith(f"e.g. {train / WNIDS[1] / shown}")

    train_tar = pack_train(train, tmp_path / "tars")
    output = tmp_path / "from_tar"
    first = succeeded(build(output, "--train_tar", train_tar))
    assert shard_digests(output) == shard_digests(tmp_path / "tree")
    for built in output.iterdir():  # build again from the kept index alone
        if built.is_dir() and built.name != ".tar_index":
            shutil.rmtree(built)
        elif built.is_file():
            built.unlink()
    again = succeeded(build(output, "--train_tar", train_tar))
    assert "using the index kept in" in again.stderr and "indexing" not in again.stderr
    assert shard_digests(output) == shard_digests(tmp_path / "tree")
    assert ignored_line(again, "train") == ignored_line(first, "train")


# A sparse member cannot be read in place.

@pytest.mark.parametrize("tar_format", ["gnu", "posix"])
def test_a_sparse_member_is_refused(sample, tmp_path: Path, tar_format: str) -> None:
    train = make_tree(sample, tmp_path / "train")
    image = sorted((train / WNIDS[0]).iterdir())[0]
    with open(image, "r+b") as handle:  # a hole of 1 MiB after the JPEG: a real sparse file
        handle.truncate(image.stat().st_size + (1 << 20))
    assert image.stat().st_blocks * 512 < image.stat().st_size
    train_tar = pack_train(train, tmp_path / "tars", "--sparse", f"--format={tar_format}")
    result = build(tmp_path / "out", "--train_tar", train_tar)
    assert_one_line_error(result, f"{train_tar}[./{WNIDS[0]}.tar]: member ./{image.name} is a sparse file, "
                          "which cannot be read in place")


# Label files that are not UTF-8 text.

@pytest.mark.parametrize("which", ["--labels_file", "--validation_labels_file", "--bounding_box_file",
                                   "LOC_synset_mapping.txt", "LOC_val_solution.csv"])
def test_a_label_file_that_is_not_utf8_is_one_line(sample, tmp_path: Path, which: str) -> None:
    root = make_kaggle_tree(sample, tmp_path / "kaggle")
    broken = root / which if which.startswith("LOC") else tmp_path / "broken.txt"
    broken.write_bytes(b"n01440764 \xff\xfe\n")
    result = build(tmp_path / "out", "--kaggle_root", root, *([] if which.startswith("LOC") else [which, broken]))
    assert_one_line_error(result, f"{broken}: cannot read the", "can't decode byte 0xff")
