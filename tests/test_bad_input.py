"""Bad input gives one clear line naming the file and exit 1; --skip_bad_images lists and counts it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import run_build_cli
from tfread import read_split

WNIDS = ("n01440764", "n02119789")


def make_tree(sample, root: Path, per_class: int = 3) -> Path:
    """A small train tree copied from the sample."""
    for wnid in WNIDS:
        (root / wnid).mkdir(parents=True)
        for path in sorted((sample.train_dir / wnid).iterdir())[1 : 1 + per_class]:
            shutil.copy(path, root / wnid / path.name)
    return root


def build(train: Path, output: Path, *extra: str):
    return run_build_cli("--train_directory", train, "--output_directory", output, "--train_shards", "1",
                         "--num_threads", "1", *extra, check=False)


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for fragment in fragments:
        assert fragment in last, last


def test_missing_directory(tmp_path: Path) -> None:
    result = build(tmp_path / "nowhere", tmp_path / "out")
    assert_one_line_error(result, str(tmp_path / "nowhere"), "train directory not found")


def test_a_file_given_as_the_directory(tmp_path: Path) -> None:
    (tmp_path / "train").write_text("not a folder")
    assert_one_line_error(build(tmp_path / "train", tmp_path / "out"), str(tmp_path / "train"),
                          "train is a file, not a directory")


def test_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    assert_one_line_error(build(tmp_path / "train", tmp_path / "out"), str(tmp_path / "train"), "has no images")


def test_split_with_only_non_images(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "README.txt").write_text("not an image")
    assert_one_line_error(build(tmp_path / "train", tmp_path / "out"), "has no images")


def test_unknown_wnid(sample, tmp_path: Path) -> None:
    train = make_tree(sample, tmp_path / "train")
    shutil.copytree(train / WNIDS[0], train / "n99999999")
    assert_one_line_error(build(train, tmp_path / "out"), str(train / "n99999999"), "not a class of the labels file")


def test_class_folder_without_images(sample, tmp_path: Path) -> None:
    train = make_tree(sample, tmp_path / "train")
    (train / "n01443537").mkdir()
    assert_one_line_error(build(train, tmp_path / "out"), str(train / "n01443537"), "has no images")


def test_loose_image_without_a_class(sample, tmp_path: Path) -> None:
    train = tmp_path / "train"
    train.mkdir()
    for path in sorted((sample.train_dir / WNIDS[0]).iterdir())[:2]:
        shutil.copy(path, train / path.name)
    assert_one_line_error(build(train, tmp_path / "out"), "loose images but no class folders")


def test_missing_labels_file(sample, tmp_path: Path) -> None:
    train = make_tree(sample, tmp_path / "train")
    result = build(train, tmp_path / "out", "--labels_file", str(tmp_path / "nope.txt"))
    assert_one_line_error(result, str(tmp_path / "nope.txt"), "labels file not found")


def add_bad_files(train: Path) -> tuple[Path, Path]:
    good = next((train / WNIDS[0]).iterdir())
    truncated = train / WNIDS[0] / f"{WNIDS[0]}_99991.JPEG"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    html = train / WNIDS[1] / f"{WNIDS[1]}_99992.JPEG"
    html.write_text("<!DOCTYPE html><html><body>Please log in</body></html>")
    return truncated, html


@pytest.mark.parametrize("resize", [[], ["--resize_images"]], ids=["copy", "resize"])
def test_truncated_image_stops_the_build(sample, tmp_path: Path, resize: list[str]) -> None:
    train = make_tree(sample, tmp_path / "train")
    truncated, html = add_bad_files(train)
    html.unlink()
    result = build(train, tmp_path / "out", *resize)
    assert_one_line_error(result, str(truncated), "truncated", "--skip_bad_images")
    assert not [p for p in (tmp_path / "out").iterdir() if "-of-" in p.name]


def test_non_image_file(sample, tmp_path: Path) -> None:
    train = make_tree(sample, tmp_path / "train")
    truncated, html = add_bad_files(train)
    truncated.unlink()
    assert_one_line_error(build(train, tmp_path / "out"), str(html), "not an image file")


def test_skip_bad_images_lists_and_counts_them(sample, tmp_path: Path) -> None:
    train = make_tree(sample, tmp_path / "train")
    truncated, html = add_bad_files(train)
    output = tmp_path / "out"
    result = build(train, output, "--skip_bad_images")
    assert result.returncode == 0, result.stderr
    row = result.stdout.splitlines()[1].split()
    assert row[0] == "train" and row[1:3] == ["8", "6"] and row[5] == "2"
    report = (output / "bad_images.tsv").read_text().splitlines()
    assert report[0] == "split\tpath\treason"
    assert sorted(line.split("\t")[1] for line in report[1:]) == sorted([str(truncated), str(html)])
    names = {r["image/filename"] for r in read_split(output, "train")}
    assert len(names) == 6 and truncated.name not in names and html.name not in names


@pytest.mark.parametrize("flag", ["--bbox_tar", "--write_index"])
def test_a_url_where_only_a_local_path_will_do_is_one_line(sample, tmp_path: Path, flag: str) -> None:
    paths = {"--output_directory": tmp_path / "out", "--train_directory": sample.train_dir, flag: "s3://bucket/imagenet"}
    args = [item for key, value in paths.items() for item in (key, value)]
    result = run_build_cli(*args, "--train_shards", "1", check=False, cwd=tmp_path)
    assert_one_line_error(result, f"s3://bucket/imagenet: {flag} takes a local or mounted path, not a URL")
    assert list(tmp_path.iterdir()) == [], "nothing may be written, least of all a local folder named s3:"


@pytest.mark.parametrize("flag", ["--output_directory", "--train_directory", "--verify"])
def test_a_url_of_an_unknown_storage_is_one_line(sample, tmp_path: Path, flag: str) -> None:
    paths = {"--output_directory": tmp_path / "out", "--train_directory": sample.train_dir, "--verify": None}
    paths[flag] = "nosuchstore://bucket/imagenet"
    args = [item for key, value in paths.items() if value is not None for item in (key, value)]
    result = run_build_cli(*args, "--train_shards", "1", check=False, cwd=tmp_path)
    assert_one_line_error(result, "nosuchstore://bucket/imagenet: nosuchstore:// is not a storage this tool can read")
    assert list(tmp_path.iterdir()) == [], "nothing may be written, least of all a local folder named nosuchstore:"
