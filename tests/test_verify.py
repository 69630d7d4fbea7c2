"""`--verify`: a clean build passes; each kind of damage is named precisely with a non-zero exit."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO, run_build_cli, sample_args
from ilsvrc_archives import tar_bytes
from imagenet_tfrecords.output.dali_index import compute_index, iter_records, open_shard, write_index
from imagenet_tfrecords.proto.imgrec_example_pb2 import Example
from imagenet_tfrecords.output.records import frame_record
from imagenet_tfrecords.sample import SAMPLE_WNIDS, TRAIN_PER_CLASS, VALIDATION_PER_CLASS

TRAIN_SHARD, VALIDATION_SHARD = "train-00001-of-00004", "validation-00001-of-00002"


@pytest.fixture
def build(resized_build: Path, tmp_path: Path) -> Path:
    """A private copy of the session's build, free to damage."""
    return Path(shutil.copytree(resized_build, tmp_path / "out"))


def verify(directory: Path, *extra: str | Path) -> tuple[int, dict]:
    result = run_build_cli("--verify", directory, "--json", *extra, check=False)
    return result.returncode, json.loads(result.stdout)


def problem_lines(report: dict) -> list[str]:
    return [problem["line"] for problem in report["problems"]]


def record_offsets(shard: Path) -> list[int]:
    return [offset for offset, _ in compute_index(shard)]


def record_filenames(shard: Path) -> list[str]:
    handle, size = open_shard(shard)
    with handle:
        return [Example.FromString(record.payload).features.feature["image/filename"].bytes_list.value[0].decode()
                for record in iter_records(handle, size)]


def rewrite_shard(shard: Path, change: Callable[[int, Example], None]) -> None:
    """Re-frame every record of a shard after `change(k, example)`, and re-index it."""
    handle, size = open_shard(shard)
    with handle:
        examples = [Example.FromString(record.payload) for record in iter_records(handle, size)]
    for k, example in enumerate(examples):
        change(k, example)
    shard.write_bytes(b"".join(frame_record(e.SerializeToString(deterministic=True)) for e in examples))
    write_index(shard, shard.parent / "idx")


def test_clean_build_verifies(resized_build: Path) -> None:
    table = run_build_cli("--verify", resized_build, check=False)
    assert table.returncode == 0, table.stdout
    assert "OK: every check holds" in table.stdout
    assert run_build_cli("--verify", resized_build, "--deep", check=False).returncode == 0

    code, report = verify(resized_build)
    assert code == 0 and report["ok"] and report["problems"] == []
    assert report["index_directory"] == str(resized_build / "idx")
    train, validation = report["splits"]["train"], report["splits"]["validation"]
    classes = len(SAMPLE_WNIDS)
    assert (train["records"], train["expected_records"], train["shards"]) == (classes * TRAIN_PER_CLASS,) * 2 + (4,)
    assert (validation["records"], validation["expected_records"]) == (classes * VALIDATION_PER_CLASS,) * 2
    assert validation["shards"] == 2
    assert train["classes"] == validation["classes"] == classes
    assert (train["per_class_min"], train["per_class_max"]) == (TRAIN_PER_CLASS, TRAIN_PER_CLASS)
    assert sorted(train["label_histogram"].values()) == [TRAIN_PER_CLASS] * classes
    manifest = json.loads((resized_build / "manifest.json").read_text())
    assert {name: (s["records"], s["sha256"]) for name, s in report["shards"].items()} == {
        name: (entry["records"], entry["sha256"]) for name, entry in manifest["shards"].items()}


def test_module_entry_point(resized_build: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "imagenet_tfrecords.verify", str(resized_build), "--deep",
                             "--num_threads", "2"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every image decoded" in result.stdout and "OK: every check holds" in result.stdout
    no_workers = subprocess.run([sys.executable, "-m", "imagenet_tfrecords.verify", str(resized_build),
                                 "--num_threads", "0"], cwd=REPO, capture_output=True, text=True)
    assert no_workers.returncode == 2 and no_workers.stdout == ""
    assert no_workers.stderr.strip().splitlines()[-1].endswith("argument --num_threads: must be at least 1, got 0")


def test_corrupt_byte_names_shard_and_record_offset(build: Path) -> None:
    shard = build / TRAIN_SHARD
    offset = record_offsets(shard)[3]
    data = bytearray(shard.read_bytes())
    data[offset + 12 + 100] ^= 0x01  # one bit inside record 3's payload
    shard.write_bytes(data)
    code, report = verify(build)
    assert code == 1
    lines = problem_lines(report)
    assert f"{TRAIN_SHARD}: offset {offset}: data CRC mismatch (corrupt record)" in lines
    assert f"train: {100 - 25 + 3} records, manifest.json expects 100 (100 images planned, 0 bad left out)" in lines
    assert all(line.startswith((TRAIN_SHARD, "train:")) for line in lines), lines


def test_corrupt_length_field_names_the_record(build: Path) -> None:
    shard = build / TRAIN_SHARD
    offset = record_offsets(shard)[5]
    data = bytearray(shard.read_bytes())
    data[offset + 2] ^= 0x40  # the record's length, covered by the length CRC
    shard.write_bytes(data)
    code, report = verify(build)
    assert code == 1
    assert f"{TRAIN_SHARD}: offset {offset}: length CRC mismatch (corrupt record header)" in problem_lines(report)


def test_truncated_shard_names_the_cut_record(build: Path) -> None:
    shard = build / TRAIN_SHARD
    offsets = record_offsets(shard)
    size = shard.stat().st_size
    os.truncate(shard, offsets[7] + 20)
    code, report = verify(build)
    assert code == 1
    lines = problem_lines(report)
    assert any(line.startswith(f"{TRAIN_SHARD}: offset {offsets[7]}: truncated") for line in lines), lines
    assert f"{TRAIN_SHARD}: size {offsets[7] + 20} bytes, manifest.json says {size}" in lines
    assert report["shards"][TRAIN_SHARD]["records"] == 7


def test_deleted_shard_is_missing(build: Path) -> None:
    (build / VALIDATION_SHARD).unlink()
    code, report = verify(build)
    assert code == 1
    lines = problem_lines(report)
    assert f"{VALIDATION_SHARD}: missing" in lines
    assert f"{build / 'idx' / VALIDATION_SHARD}.idx: DALI index of a shard that is not there" in lines
    assert report["splits"]["validation"]["records"] < report["splits"]["validation"]["expected_records"]


def test_stray_temporary_file(build: Path) -> None:
    stray = build / f".{TRAIN_SHARD}.tmp"
    stray.write_bytes(b"half a shard")
    code, report = verify(build)
    assert code == 1
    assert problem_lines(report) == [
        f"{stray}: stray temporary file: an interrupted write; resume the build or delete it"]


def test_wrong_and_missing_index_files(build: Path) -> None:
    index = build / "idx" / f"{TRAIN_SHARD}.idx"
    lines = index.read_text().splitlines()
    offset, size = map(int, lines[2].split())
    lines[2] = f"{offset} {size + 1}"
    index.write_text("\n".join(lines) + "\n")
    (build / "idx" / f"{VALIDATION_SHARD}.idx").unlink()
    code, report = verify(build)
    assert code == 1
    assert problem_lines(report) == [
        f"{TRAIN_SHARD}: DALI index {index} line 3 says '{offset} {size + 1}', "
        f"the shard's framing gives '{offset} {size}'",
        f"{VALIDATION_SHARD}: no DALI index {build / 'idx' / VALIDATION_SHARD}.idx",
    ]


def test_class_sorted_shards_are_flagged(build: Path) -> None:
    """Re-shard train sorted by class, as unshuffled tools do: every train shard is flagged."""
    payloads = []
    for shard in sorted(build.glob("train-*")):
        handle, size = open_shard(shard)
        with handle:
            payloads += [record.payload for record in iter_records(handle, size)]
    payloads.sort(key=lambda p: Example.FromString(p).features.feature["image/class/label"].int64_list.value[0])
    quarter = len(payloads) // 4
    for k, shard in enumerate(sorted(build.glob("train-*"))):
        shard.write_bytes(b"".join(frame_record(p) for p in payloads[k * quarter:(k + 1) * quarter]))
        write_index(shard, build / "idx")
    (build / "manifest.json").unlink()
    code, report = verify(build, "--no_manifest")
    assert code == 1
    lines = problem_lines(report)
    assert len(lines) == 4, lines
    assert all("the split looks class-sorted, not shuffled" in line and line.startswith("train-") for line in lines)
    assert report["notes"] and "no manifest.json" in report["notes"][0]


def test_label_out_of_range_and_inconsistent_synset(build: Path) -> None:
    def damage(k: int, example: Example) -> None:
        feature = example.features.feature
        if k == 0:
            feature["image/class/label"].int64_list.value[0] = 0  # background, never a class with label_offset 1
            box_labels = feature["image/object/bbox/label"].int64_list.value
            box_labels[:] = [0] * len(box_labels)
        if k == 1:
            feature["image/class/synset"].bytes_list.value[0] = b"n99999999"

    shard = build / TRAIN_SHARD
    rewrite_shard(shard, damage)
    offsets, images = record_offsets(shard), record_filenames(shard)
    code, report = verify(build)
    assert code == 1
    lines = problem_lines(report)
    assert f"{TRAIN_SHARD}: offset {offsets[0]} ({images[0]}): label 0 is outside 1..1000" in lines
    assert any(line.startswith("label ") and "'n99999999'" in line
               and f"{TRAIN_SHARD} offset {offsets[1]} ({images[1]})" in line for line in lines), lines


def test_deep_finds_a_grayscale_image_labelled_rgb(build: Path) -> None:
    def to_grayscale(k: int, example: Example) -> None:
        if k == 4:
            encoded = example.features.feature["image/encoded"].bytes_list.value
            with Image.open(io.BytesIO(encoded[0])) as image:
                out = io.BytesIO()
                image.convert("L").save(out, "JPEG", quality=90)
            encoded[0] = out.getvalue()

    shard = build / TRAIN_SHARD
    rewrite_shard(shard, to_grayscale)
    (build / "manifest.json").unlink()  # the shard's bytes change; only --deep can tell what is wrong
    assert verify(build, "--no_manifest")[0] == 0
    code, report = verify(build, "--deep", "--no_manifest")
    assert code == 1
    offset, image = record_offsets(shard)[4], record_filenames(shard)[4]
    assert problem_lines(report) == [f"{TRAIN_SHARD}: offset {offset} ({image}): image is L, not 3-channel RGB"]
    assert report["problems"][0]["image"] == image


def test_missing_directory_is_one_line(tmp_path: Path) -> None:
    result = run_build_cli("--verify", tmp_path / "nowhere", check=False)
    assert result.returncode == 1
    expected = f"error: {tmp_path / 'nowhere'}: not a directory; pass the output directory of a build"
    assert result.stderr.strip() == expected


def test_full_imagenet_totals_are_enforced(build: Path) -> None:
    """A manifest saying the input was full ImageNet holds the build to 1,281,167 / 50,000 and 1000 classes."""
    manifest_path = build / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["splits"]["validation"].update(images=50_000, classes_total=1000)
    manifest_path.write_text(json.dumps(manifest))
    code, report = verify(build)
    assert code == 1
    assert problem_lines(report) == [
        "validation: 20 records, manifest.json expects 50000 (50000 images planned, 0 bad left out)",
        "validation: 20 records; full ImageNet validation has 50000",
        "validation: 5 classes with 4..4 records each; full ImageNet validation has 1000 with 50..50",
    ]


def test_a_missing_index_directory_is_a_problem_when_the_build_wrote_one(build: Path) -> None:
    shutil.rmtree(build / "idx")
    code, report = verify(build)
    assert code == 1
    assert problem_lines(report)[0] == f"{build / 'idx'}: index directory not found"


def test_a_build_without_indexes_verifies_without_them(sample, tmp_path: Path) -> None:
    run_build_cli(*sample_args(sample, tmp_path, "--no_index"))
    code, report = verify(tmp_path)
    assert code == 0 and report["index_directory"] is None
    assert any("no DALI indexes" in note for note in report["notes"])


def test_missing_manifest_fails_unless_the_shards_were_made_elsewhere(build: Path) -> None:
    (build / "manifest.json").unlink()
    code, report = verify(build)
    assert code == 1
    assert problem_lines(report) == [
        f"{build / 'manifest.json'}: missing, so the shards cannot be checked against the build's record; "
        "rebuild, or pass --no_manifest if another tool made these shards"]
    code, report = verify(build, "--no_manifest")
    assert code == 0 and report["problems"] == []
    assert any("no manifest.json" in note for note in report["notes"])


def test_stray_files_are_listed(build: Path) -> None:
    (build / "README.txt").write_text("notes")
    (build / f"{TRAIN_SHARD}.bak").write_bytes((build / TRAIN_SHARD).read_bytes())
    (build / "old").mkdir()
    (build / "idx" / "notes.txt").write_text("notes")
    code, report = verify(build)
    assert code == 1
    assert problem_lines(report) == [
        f"{build / 'README.txt'}: stray file: a build does not write it; move it out of this directory",
        f"{build / 'old'}: stray directory: a build does not write it; move it out of this directory",
        f"{build / TRAIN_SHARD}.bak: stray file: a build does not write it (a train-*/validation-* pattern would "
        "read it as a shard); move it out of this directory",
        f"{build / 'idx' / 'notes.txt'}: stray file: a build does not write it; move it out of this directory",
    ]


def test_everything_a_tar_build_with_bad_images_writes_is_expected(sample, tmp_path: Path) -> None:
    """A build from a tar (tar index cache) that left out a bad image (bad_images.tsv) verifies clean."""
    good = [(p.name, p.read_bytes()) for p in sorted((sample.train_dir / "n01440764").iterdir())[:3]]
    train = tmp_path / "train.tar"
    train.write_bytes(tar_bytes([("n01440764.tar", tar_bytes([*good, ("n01440764_9.JPEG", b"<html>gone</html>")]))]))
    output = tmp_path / "out"
    run_build_cli("--train_tar", train, "--output_directory", output, "--train_shards", "1", "--skip_bad_images")
    assert {".tar_index", "bad_images.tsv", "manifest.json", "idx"} <= {p.name for p in output.iterdir()}
    code, report = verify(output)
    assert code == 0, report["problems"]


def test_a_record_that_breaks_the_schema_names_its_image(build: Path) -> None:
    def drop_height(k: int, example: Example) -> None:
        if k == 2:
            del example.features.feature["image/height"]

    shard = build / TRAIN_SHARD
    rewrite_shard(shard, drop_height)
    (build / "manifest.json").unlink()
    code, report = verify(build, "--no_manifest")
    assert code == 1
    offset, image = record_offsets(shard)[2], record_filenames(shard)[2]
    assert problem_lines(report) == [
        f"{TRAIN_SHARD}: offset {offset} ({image}): schema: missing keys ['image/height'], unexpected keys []"]
