"""Building straight from the ILSVRC tarballs and from the Kaggle layout gives the extracted tree's bytes."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from scipy.io import loadmat

from conftest import kill_build_after_first_train_shard, run_build_cli, sample_args, shard_digests
from ilsvrc_archives import make_kaggle_tree, tar_bytes
from imagenet_tfrecords.inputs import tars
from imagenet_tfrecords.errors import UserError
from imagenet_tfrecords.generate import Answers, build_arguments, build_parser
from imagenet_tfrecords.inputs.labels import DEFAULT_LABELS_FILE, DEFAULT_VALIDATION_LABELS_FILE, load_wnids
from imagenet_tfrecords.sample import SAMPLE_WNIDS, SampleTarballs, make_sample_tarballs
from imagenet_tfrecords.storage.folders import LocalFolder
from test_resume import SLOW

SHARDS = ("--train_shards", "4", "--validation_shards", "2")


@pytest.fixture(scope="module")
def tarballs(sample, tmp_path_factory: pytest.TempPathFactory) -> SampleTarballs:
    return make_sample_tarballs(sample, tmp_path_factory.mktemp("tars"))


def tar_args(tarballs: SampleTarballs, output: Path, *extra: str | Path) -> list[str | Path]:
    return ["--train_tar", tarballs.train_tar, "--validation_tar", tarballs.validation_tar, "--devkit", tarballs.devkit,
            "--bbox_tar", tarballs.bbox_tar, "--output_directory", output, *SHARDS, *extra]


def one_line_error(result: subprocess.CompletedProcess, *fragments: str | Path) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for fragment in fragments:
        assert str(fragment) in last, last
    return last


def test_the_tarballs_are_shaped_like_ilsvrc(tarballs: SampleTarballs) -> None:
    with tarfile.open(tarballs.train_tar) as outer:
        assert outer.getnames() == [f"{wnid}.tar" for wnid in SAMPLE_WNIDS]
    with tarfile.open(tarballs.validation_tar) as val:
        assert val.getnames() != sorted(val.getnames())
    with tarfile.open(tarballs.devkit) as devkit:
        synsets = loadmat(io.BytesIO(devkit.extractfile("ILSVRC2012_devkit_t12/data/meta.mat").read()),
                          squeeze_me=True)["synsets"]
    leaves = [str(w) for w, c in zip(synsets["WNID"], synsets["num_children"]) if c == 0]
    assert sorted(leaves) == load_wnids(DEFAULT_LABELS_FILE) and leaves != sorted(leaves)
    assert len(leaves) < len(synsets)  # a non-leaf synset the reader must leave out


def test_tarball_build_is_byte_identical_to_the_extracted_tree(tarballs, copy_build: Path, tmp_path: Path) -> None:
    result = run_build_cli(*tar_args(tarballs, tmp_path, "--num_threads", "2"))
    assert "indexed 100 images in 5 class archives" in result.stderr
    assert len(shard_digests(copy_build)) == 6
    assert shard_digests(tmp_path) == shard_digests(copy_build)
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == sorted(p.name for p in (copy_build / "idx").iterdir())


def test_sample_from_tars_is_byte_identical_to_the_extracted_tree(copy_build: Path, tmp_path: Path) -> None:
    run_build_cli("--sample", tmp_path, "--from_tars", "--num_threads", "2")
    assert (tmp_path / "tars" / "ILSVRC2012_img_train.tar").is_file()
    manifest = json.loads((tmp_path / "tfrecords" / "manifest.json").read_text())
    assert manifest["splits"]["validation"]["images"] == 20
    assert shard_digests(tmp_path / "tfrecords") == shard_digests(copy_build)


def test_indexing_reads_headers_only(tarballs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read = []

    class Counting(io.BufferedReader):
        def read(self, size: int = -1) -> bytes:
            data = super().read(size)
            read.append(len(data))
            return data

    monkeypatch.setattr(tars, "open", lambda path, mode: Counting(io.FileIO(path, mode)), raising=False)
    index = tars.index_tar(tarballs.train_tar, LocalFolder(tmp_path), nested=True)
    assert len(index.names) == 100 and index.names == sorted(index.names)
    assert sum(read) < tarballs.train_tar.stat().st_size / 20
    with open(tarballs.train_tar, "rb") as handle:  # every (offset, length) is a whole JPEG (or the one PNG)
        for offset, length in index.members:
            handle.seek(offset)
            assert handle.read(4) in (b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xee", b"\xff\xd8\xff\xdb", b"\x89PNG")


def test_kaggle_layout_is_byte_identical_to_the_extracted_tree(sample, copy_build: Path, tmp_path: Path) -> None:
    root = make_kaggle_tree(sample, tmp_path / "kaggle")
    output = tmp_path / "out"
    run_build_cli("--kaggle_root", root, "--bounding_box_file", sample.bounding_box_file, "--output_directory", output,
                  *SHARDS, "--num_threads", "2")
    assert shard_digests(output) == shard_digests(copy_build)


def test_kaggle_validation_is_labelled_by_its_solution_file(sample, tmp_path: Path) -> None:
    name = sorted(p.name for p in sample.validation_dir.iterdir())[0]
    assert DEFAULT_VALIDATION_LABELS_FILE.read_text().splitlines()[int(name[15:23]) - 1] != "n01440764"
    root = make_kaggle_tree(sample, tmp_path / "kaggle", relabel={name: "n01440764"})
    val = root / "ILSVRC" / "Data" / "CLS-LOC" / "val"  # found by its place in the layout, no --kaggle_root
    result = run_build_cli("--validation_directory", val, "--output_directory", tmp_path / "out",
                           "--validation_shards", "1", check=False)
    one_line_error(result, name, "LOC_val_solution.csv says n01440764", DEFAULT_VALIDATION_LABELS_FILE)


def test_kaggle_synset_mapping_in_another_order_is_refused(sample, tmp_path: Path) -> None:
    root = make_kaggle_tree(sample, tmp_path / "kaggle")
    mapping = root / "LOC_synset_mapping.txt"
    lines = mapping.read_text().splitlines()
    mapping.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    result = run_build_cli("--kaggle_root", root, "--output_directory", tmp_path / "out", *SHARDS, check=False)
    one_line_error(result, mapping, "class 0 is n01443537")


def test_not_a_kaggle_root(sample, tmp_path: Path) -> None:
    result = run_build_cli("--kaggle_root", sample.root, "--output_directory", tmp_path / "out", check=False)
    one_line_error(result, sample.root, "not the Kaggle ImageNet layout")


def test_devkit_and_label_file_disagreeing_is_an_error(sample, tarballs, tmp_path: Path) -> None:
    name = sorted(p.name for p in sample.validation_dir.iterdir())[-1]
    number = int(name[len("ILSVRC2012_val_"):-len(".JPEG")])
    labels = DEFAULT_VALIDATION_LABELS_FILE.read_text().splitlines()
    labels[number - 1] = "n01440764" if labels[number - 1] != "n01440764" else "n02119789"
    wrong = tmp_path / "labels.txt"
    wrong.write_text("\n".join(labels) + "\n")
    result = run_build_cli("--validation_tar", tarballs.validation_tar, "--devkit", tarballs.devkit,
                           "--validation_labels_file", wrong, "--output_directory", tmp_path / "out",
                           "--validation_shards", "1", check=False)
    one_line_error(result, name, tarballs.devkit, wrong)
    assert not list((tmp_path / "out").glob("validation-*"))


@pytest.mark.parametrize("cut", ["inside a class tar", "at a header"])
def test_truncated_train_tar_is_one_line(tarballs, tmp_path: Path, cut: str) -> None:
    with tarfile.open(tarballs.train_tar) as outer:
        second = outer.getmembers()[1]
    data = tarballs.train_tar.read_bytes()
    end = second.offset_data + second.size // 2 if cut == "inside a class tar" else second.offset
    truncated = tmp_path / "ILSVRC2012_img_train.tar"
    truncated.write_bytes(data[:end])
    result = run_build_cli("--train_tar", truncated, "--output_directory", tmp_path / "out", "--train_shards", "1",
                           check=False)
    one_line_error(result, truncated, "damaged or incomplete")



def test_truncated_bbox_tar_is_one_line_not_fewer_boxes(tarballs, tmp_path: Path) -> None:
    # tarfile alone reads a tar.gz cut at some points quietly up to its last whole member, which would lose the
    # boxes after it: every cut must be refused.
    data = tarballs.bbox_tar.read_bytes()
    synsets = frozenset(SAMPLE_WNIDS)
    for cut in range(40, len(data), 40):
        truncated = tmp_path / f"cut-{cut}" / "ILSVRC2012_bbox_train_v2.tar.gz"
        truncated.parent.mkdir()
        truncated.write_bytes(data[:cut])
        with pytest.raises(UserError, match="damaged or incomplete"):
            tars.load_bounding_box_tar(truncated, LocalFolder(truncated.parent / "cache"), synsets)
    output = tmp_path / "out"
    result = run_build_cli("--train_tar", tarballs.train_tar, "--bbox_tar", truncated, "--output_directory", output,
                           *SHARDS, check=False)
    one_line_error(result, truncated, "damaged or incomplete")
    assert not output.exists()  # nothing written: the folder the failed build made is gone with its lock

def test_a_class_tar_that_is_not_a_tar(sample, tmp_path: Path) -> None:
    jpeg = next((sample.train_dir / "n01440764").iterdir()).read_bytes()
    train = tmp_path / "train.tar"
    train.write_bytes(tar_bytes([("n01440764.tar", tar_bytes([("n01440764_1.JPEG", jpeg)])), ("n02119789.tar", jpeg)]))
    result = run_build_cli("--train_tar", train, "--output_directory", tmp_path / "out", "--train_shards", "1",
                           check=False)
    one_line_error(result, f"{train}[n02119789.tar]", "not a readable tar")


def test_a_tar_of_loose_images_matches_no_known_layout(sample, tmp_path: Path) -> None:
    jpeg = next((sample.train_dir / "n01440764").iterdir()).read_bytes()
    train = tmp_path / "train.tar"
    train.write_bytes(tar_bytes([("n01440764/n01440764_1.JPEG", jpeg)]))
    result = run_build_cli("--train_tar", train, "--output_directory", tmp_path / "out", "--train_shards", "1",
                           check=False)
    one_line_error(result, train, "holds no <wnid>.tar class archives")


def test_a_member_that_is_not_a_jpeg(sample, tmp_path: Path) -> None:
    good = [(p.name, p.read_bytes()) for p in sorted((sample.train_dir / "n01440764").iterdir())[1:3]]
    train = tmp_path / "train.tar"
    train.write_bytes(tar_bytes([("n01440764.tar", tar_bytes([*good, ("n01440764_9.JPEG", b"<html>not found</html>")]))]))
    args = ["--train_tar", train, "--output_directory", tmp_path / "out", "--train_shards", "1", "--num_threads", "1"]
    one_line_error(run_build_cli(*args, check=False), f"{train}[n01440764_9.JPEG]")
    result = run_build_cli(*args, "--skip_bad_images")
    assert f"{train}[n01440764_9.JPEG]" in (tmp_path / "out" / "bad_images.tsv").read_text()
    assert result.stdout.splitlines()[1].split()[1:3] == ["3", "2"]


def test_resume_after_kill_from_tars_reuses_the_index(sample, tarballs, tmp_path: Path) -> None:
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    run_build_cli(*sample_args(sample, reference, *SLOW))
    args = [*tar_args(tarballs, interrupted), *SLOW]
    done_at_kill = kill_build_after_first_train_shard(args, interrupted)
    assert 0 < len(done_at_kill) < 12
    kept = {p.name: p.stat().st_mtime_ns for p in (interrupted / ".tar_index").iterdir()}
    assert len(kept) == 3  # train and validation indexes, bounding boxes

    result = run_build_cli(*args)
    assert "indexed" not in result.stderr
    assert result.stderr.count("using the index kept in") == 2
    assert {p.name: p.stat().st_mtime_ns for p in (interrupted / ".tar_index").iterdir()} == kept
    assert sum(int(line.split()[4]) for line in result.stdout.splitlines()[1:3]) == len(done_at_kill)
    assert shard_digests(interrupted) == shard_digests(reference)


def test_generate_uses_the_tarballs_when_nothing_is_extracted(tarballs, tmp_path: Path) -> None:
    data = tarballs.train_tar.parent
    answers = Answers(data, tmp_path, False, 256, 256, "stretch", 90, 1)
    argv = build_arguments(answers, build_parser().parse_args([]))
    assert argv[:8] == ["--train_tar", str(tarballs.train_tar), "--validation_tar", str(tarballs.validation_tar),
                        "--devkit", str(tarballs.devkit), "--bbox_tar", str(tarballs.bbox_tar)]
    (data / "train").mkdir()
    try:
        argv = build_arguments(answers, build_parser().parse_args([]))
    finally:
        (data / "train").rmdir()
    assert argv[:2] == ["--train_directory", str(data / "train")] and "--train_tar" not in argv
