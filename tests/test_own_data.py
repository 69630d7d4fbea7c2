"""Your own dataset, not ImageNet: cats, dogs and birds in class folders (mixed extensions, a PNG), validation
as class folders or as a flat folder with a `file,class` CSV; built with only a labels file, with none, and
through generate_tfrecord_protos.py in a real terminal; every record read back with TensorFlow."""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from pathlib import Path

import pexpect
import pytest
from conftest import REPO, run_build_cli
from test_bad_input import assert_one_line_error
from tfread import decode, read_split

from imagenet_tfrecords.sample import _load_photos, make_photo

CLASSES = ("cats", "dogs", "birds")  # the labels file's order: not sorted
EXTENSIONS = (".jpg", ".jpeg", ".JPG", ".png")
TRAIN_PER_CLASS, VALIDATION_PER_CLASS = 5, 2


def _save(photos: list, rng: random.Random, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = make_photo(photos, rng, (rng.randint(160, 420), rng.randint(140, 360)))
    image.save(path, "PNG" if path.suffix == ".png" else "JPEG", **({} if path.suffix == ".png" else {"quality": 88}))


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/<class>/, val/<class>/, valflat/ with val.csv (a header line), classes.txt."""
    root = tmp_path_factory.mktemp("own")
    rng, photos = random.Random(7), _load_photos()
    for name in CLASSES:
        for i in range(TRAIN_PER_CLASS):
            _save(photos, rng, root / "train" / name / f"{name}_{i}{EXTENSIONS[i % len(EXTENSIONS)]}")
        for i in range(VALIDATION_PER_CLASS):
            _save(photos, rng, root / "val" / name / f"v_{name}_{i}.jpg")
    lines = ["file,class"]
    for i in range(6):
        name = CLASSES[i % 3]
        _save(photos, rng, root / "valflat" / f"photo{i:02d}{EXTENSIONS[i % 2]}")
        lines.append(f"photo{i:02d}{EXTENSIONS[i % 2]},{name}")
    (root / "val.csv").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def expected_labels(tree: Path) -> dict[str, str]:
    """File name -> class, from the folders the files lie in (not from the code under test)."""
    return {path.name: path.parent.name for path in tree.glob("*/*")}


def csv_labels(csv_file: Path) -> dict[str, str]:
    return dict(line.split(",") for line in csv_file.read_text().splitlines()[1:])


def check_split(output: Path, split: str, truth: dict[str, str], order: tuple[str, ...], offset: int = 1) -> None:
    """Every record: its label by `order`, synset and text the class name, a JPEG that decodes; all files there."""
    records = read_split(output, split)
    assert sorted(r["image/filename"] for r in records) == sorted(truth)
    for record in records:
        name = truth[record["image/filename"]]
        assert record["image/class/label"] == order.index(name) + offset
        assert record["image/class/synset"] == record["image/class/text"] == name
        pixels = decode(record["image/encoded"])
        assert pixels.shape == (record["image/height"], record["image/width"], 3)


def check_info(output: Path, order: tuple[str, ...], counts: dict[str, int]) -> None:
    info = json.loads((output / "imagenet_tfrecords.json").read_text())
    assert info["synsets"] == list(order) and info["num_classes"] == len(order)
    assert {split: info["splits"][split]["num_records"] for split in counts} == counts


def test_own_classes_need_the_labels_file_alone(own: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_build_cli("--train_directory", own / "train", "--validation_directory", own / "val",
                           "--labels_file", own / "classes.txt", "--output_directory", out, "--num_threads", "2")
    assert "Traceback" not in result.stderr and "warning" not in result.stderr.lower()
    check_split(out, "train", expected_labels(own / "train"), CLASSES)
    check_split(out, "validation", expected_labels(own / "val"), CLASSES)
    check_info(out, CLASSES, {"train": 15, "validation": 6})


def test_without_a_labels_file_the_classes_are_the_sorted_folder_names(own: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_build_cli("--train_directory", own / "train", "--validation_directory", own / "valflat",
                           "--validation_labels_file", own / "val.csv", "--output_directory", out)
    order = tuple(sorted(CLASSES))
    assert "no --labels_file: the classes are the 3 class folder names, sorted (birds, cats, dogs), labels 1..3" \
        in result.stderr
    check_split(out, "train", expected_labels(own / "train"), order)
    check_split(out, "validation", csv_labels(own / "val.csv"), order)
    check_info(out, order, {"train": 15, "validation": 6})


def test_a_csv_without_header_and_without_extensions_labels_the_flat_folder(own: Path, tmp_path: Path) -> None:
    truth = csv_labels(own / "val.csv")
    bare = tmp_path / "bare.csv"  # no header, names without their extension (as Kaggle's id,label files)
    bare.write_text("".join(f"{Path(name).stem},{label}\n" for name, label in truth.items()))
    out = tmp_path / "out"
    run_build_cli("--validation_directory", own / "valflat", "--validation_labels_file", bare,
                  "--labels_file", own / "classes.txt", "--output_directory", out)
    check_split(out, "validation", truth, CLASSES)


def test_a_csv_alone_gives_the_classes_of_a_flat_validation_build(own: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_build_cli("--validation_directory", own / "valflat", "--validation_labels_file", own / "val.csv",
                  "--output_directory", out)
    check_split(out, "validation", csv_labels(own / "val.csv"), tuple(sorted(CLASSES)))


@pytest.mark.parametrize("line,fragments", [
    (None, ["photo05.jpeg: has no line in", "(1 of the 6 files have none)", "add a 'photo05.jpeg,<class>' line"]),
    ("photo05.jpeg,lions", ["photo05.jpeg: its validation label lions is not a class"]),
    ("photo05.jpeg", [":7: expected 'file,class', got 'photo05.jpeg'"]),
    ("photo05.jpeg,birds\nphoto05.jpeg,cats", [":8: photo05.jpeg is labelled birds on an earlier line and cats here"]),
])
def test_a_flat_file_without_a_right_csv_line_is_one_line(own: Path, tmp_path: Path, line: str | None,
                                                          fragments: list[str]) -> None:
    lines = (own / "val.csv").read_text().splitlines()[:-1] + ([line] if line else [])
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(lines) + "\n")
    result = run_build_cli("--validation_directory", own / "valflat", "--validation_labels_file", broken,
                           "--labels_file", own / "classes.txt", "--output_directory", tmp_path / "out", check=False)
    assert_one_line_error(result, *fragments)


def test_csv_lines_for_files_not_there_are_one_warning(own: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.csv"
    extra.write_text((own / "val.csv").read_text() + "gone.jpg,cats\n")
    result = run_build_cli("--validation_directory", own / "valflat", "--validation_labels_file", extra,
                           "--labels_file", own / "classes.txt", "--output_directory", tmp_path / "out")
    assert f"{extra}: 1 line(s) name no file of {own / 'valflat'}, e.g. gone.jpg" in result.stderr


def test_a_metadata_file_must_cover_every_class_and_names_the_missing(own: Path, tmp_path: Path) -> None:
    metadata = tmp_path / "metadata.txt"
    metadata.write_text("cats\tdomestic cat\n")
    result = run_build_cli("--train_directory", own / "train", "--labels_file", own / "classes.txt",
                           "--imagenet_metadata_file", metadata, "--output_directory", tmp_path / "out", check=False)
    assert_one_line_error(result, f"{metadata}: no human-readable text for dogs, birds (2 of the 3 classes missing)",
                          "leave out --imagenet_metadata_file")
    metadata.write_text("cats\tdomestic cat\ndogs\tdog\nbirds\tbird\n")
    run_build_cli("--train_directory", own / "train", "--labels_file", own / "classes.txt",
                  "--imagenet_metadata_file", metadata, "--output_directory", tmp_path / "out")
    texts = {r["image/class/synset"]: r["image/class/text"] for r in read_split(tmp_path / "out", "train")}
    assert texts == {"cats": "domestic cat", "dogs": "dog", "birds": "bird"}


def test_folder_names_mixing_wnids_and_others_are_one_line(own: Path, tmp_path: Path) -> None:
    train = tmp_path / "train"
    shutil.copytree(own / "train", train)
    (train / "cats").rename(train / "n01440764")
    result = run_build_cli("--train_directory", train, "--output_directory", tmp_path / "out", check=False)
    assert_one_line_error(result, f"{train / 'birds'}: not an ImageNet wnid, while other classes are (n01440764)",
                          "pass a --labels_file that lists every class")


def test_a_rerun_with_other_classes_is_refused(own: Path, tmp_path: Path) -> None:
    """A class folder added between runs renumbers the labels: the earlier shards must not be mixed in."""
    train, out = tmp_path / "train", tmp_path / "out"
    shutil.copytree(own / "train", train)
    run_build_cli("--train_directory", train, "--output_directory", out)
    shutil.copytree(train / "cats", train / "apes")
    result = run_build_cli("--train_directory", train, "--output_directory", out, check=False)
    assert_one_line_error(result, "holds a build made with other options",
                          "the number of classes (--labels_file, or the class folders) was 3, now 4")


def test_a_trial_build_takes_the_first_images_of_the_shuffle(own: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--train_directory", own / "train", "--labels_file", own / "classes.txt", "--output_directory"]
    result = run_build_cli(*args, out, "--max_images_per_split", "6")
    assert "train: a trial build of 6 of its 15 images (--max_images_per_split)" in result.stderr
    records = read_split(out, "train")
    assert len(records) == 6 and len({r["image/class/synset"] for r in records}) > 1  # a mix, not one class
    run_build_cli(*args, tmp_path / "again", "--max_images_per_split", "6", "--num_threads", "1")
    assert [r["image/filename"] for r in read_split(tmp_path / "again", "train")] == \
        [r["image/filename"] for r in records]  # the same images, in the same order, on every run
    refused = run_build_cli(*args, out, check=False)
    assert_one_line_error(refused, "--max_images_per_split was 6, now null")


def _generate(args: list[str], env: dict[str, str]) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, [str(REPO / "generate_tfrecord_protos.py"), *args], cwd=str(REPO), env=env,
                         encoding="utf-8", timeout=180, dimensions=(50, 400))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("IMAGENET_DATA_DIR", "PROTO_OUT_DIR")}
    return env | {"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def test_generate_asks_for_own_data_in_a_terminal(own: Path, tmp_path: Path) -> None:
    """Every prompt answered as a user would: the CSV of the flat validation folder, Enter for the labels file
    (the folder names), the defaults, labels from 0; the label question speaks of 3 classes."""
    data = tmp_path / "data"
    shutil.copytree(own / "train", data / "train")
    shutil.copytree(own / "valflat", data / "validation")
    out = tmp_path / "shards"
    child = _generate(["--num_threads", "1", "--min_free_gb", "0"], _env())
    prompts = {}
    for question, end, reply in [
        ("Where is the raw data", "? ", str(data)),
        ("Where should the TFRecord files go?", "] ", str(out)),
        ("has no class folders: where is the CSV", "? ", str(own / "val.csv")),
        ("Labels file, one class per line", "? ", ""),
        ("Store pre-resized images", "] ", ""),
        ("Height after resizing", "] ", "64"),
        ("Width after resizing", "] ", ""),
        ("Resize mode:", "] ", ""),
        ("JPEG quality", "] ", ""),
        ("Label convention:", "] ", "0"),
    ]:
        child.expect_exact(question)
        child.expect_exact(end)
        prompts[question] = question + child.before + child.after
        child.sendline(reply)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert "Enter: the 3 class folder names, sorted: birds, cats, dogs" in prompts["Labels file, one class per line"]
    assert "labels 1..3" in prompts["Label convention:"] and "labels 0..2" in prompts["Label convention:"]
    order = tuple(sorted(CLASSES))
    check_split(out, "train", expected_labels(own / "train"), order, offset=0)
    check_split(out, "validation", csv_labels(own / "val.csv"), order, offset=0)
    assert {(r["image/height"], r["image/width"]) for r in read_split(out, "train")} == {(64, 64)}
    check_info(out, order, {"train": 15, "validation": 6})


def test_generate_says_when_validation_is_skipped(own: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(own / "train", data / "train")
    child = _generate(["--yes", "--data_dir", str(data), "--num_threads", "1", "--min_free_gb", "0"], _env())
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert f"{data} holds no validation/ folder (nor ILSVRC2012_img_val.tar): the validation split is skipped" \
        in child.before
    assert len(read_split(data / "tfrecords", "train")) == 15


@pytest.mark.parametrize("store", ["s3_server", "gcs_server"])
def test_own_class_folders_in_a_bucket(own: Path, tmp_path: Path, store: str, request: pytest.FixtureRequest) -> None:
    """The class folder names are found in a bucket as on disk, and the CSV labels a flat folder there."""
    server = request.getfixturevalue(store)
    fs, bucket = server.fs, server.new_bucket()
    for local in (own / "train", own / "valflat"):
        for path in sorted(local.rglob("*.*")):
            fs.pipe_file(f"{bucket}/{local.name}/{path.relative_to(local).as_posix()}", path.read_bytes())
    out = tmp_path / "out"
    result = run_build_cli("--train_directory", server.url(bucket, "train"), "--validation_directory",
                           server.url(bucket, "valflat"), "--validation_labels_file", own / "val.csv",
                           "--output_directory", out, env=server.environ())
    assert "the classes are the 3 class folder names, sorted (birds, cats, dogs)" in result.stderr
    order = tuple(sorted(CLASSES))
    check_split(out, "train", expected_labels(own / "train"), order)
    check_split(out, "validation", csv_labels(own / "val.csv"), order)


def test_a_csv_that_contradicts_the_class_folders_is_one_line(own: Path, tmp_path: Path) -> None:
    contradicting = tmp_path / "labels.csv"
    contradicting.write_text("file,class\nv_cats_0.jpg,dogs\n")
    result = run_build_cli("--validation_directory", own / "val", "--validation_labels_file", contradicting,
                           "--labels_file", own / "classes.txt", "--output_directory", tmp_path / "out", check=False)
    assert_one_line_error(result, f"{own / 'val' / 'cats' / 'v_cats_0.jpg'}: lies in class folder cats but "
                          f"{contradicting} says dogs")


def test_a_failed_first_build_does_not_hold_its_options_against_the_next(own: Path, tmp_path: Path) -> None:
    """A first try that stopped on a bad image before any shard was finished: the next try, with other
    options, starts afresh instead of being refused."""
    train, out = tmp_path / "train", tmp_path / "out"
    shutil.copytree(own / "train", train)
    bad = train / "cats" / "cats_0.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # cut short: a bad image, and the build stops
    first = run_build_cli("--train_directory", train, "--output_directory", out, "--jpeg_q", "80", "--resize_images",
                          "--num_threads", "1", check=False)
    assert_one_line_error(first, str(bad))
    assert (out / "manifest.json").exists()
    bad.unlink()
    again = run_build_cli("--train_directory", train, "--output_directory", out, "--resize_images")
    assert "an earlier build with other options (--jpeg_q was 80, now 90) finished no shard; starting afresh" \
        in again.stderr
    assert len(read_split(out, "train")) == 14
    assert json.loads((out / "manifest.json").read_text())["options"]["image"]["jpeg_quality"] == 90


def test_a_csv_saved_by_excel_with_a_byte_order_mark_and_no_header(own: Path, tmp_path: Path) -> None:
    excel = tmp_path / "excel.csv"
    excel.write_bytes(b"\xef\xbb\xbf" + "".join(f"{k},{v}\r\n" for k, v in csv_labels(own / "val.csv").items()).encode())
    out = tmp_path / "out"
    run_build_cli("--validation_directory", own / "valflat", "--validation_labels_file", excel,
                  "--labels_file", own / "classes.txt", "--output_directory", out)
    check_split(out, "validation", csv_labels(own / "val.csv"), CLASSES)


def test_a_labels_file_that_is_not_a_csv_says_which_names_it_labels(own: Path, tmp_path: Path) -> None:
    semicolons = tmp_path / "val.txt"
    semicolons.write_text("".join(f"{k};{v}\n" for k, v in csv_labels(own / "val.csv").items()))
    result = run_build_cli("--validation_directory", own / "valflat", "--validation_labels_file", semicolons,
                           "--labels_file", own / "classes.txt", "--output_directory", tmp_path / "out", check=False)
    assert_one_line_error(result, f"{own / 'valflat' / 'photo00.jpg'}: cannot tell the class of a file outside a "
                          "class folder", f"{semicolons} labels only ILSVRC names")
