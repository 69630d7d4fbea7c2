"""The pure parts behind download_imagenet.py: box conversion, checksum files, file choice, disk space."""

from __future__ import annotations

import dataclasses
import tarfile
from pathlib import Path

import pytest

from ilsvrc_archives import annotation_xml
from imagenet_tfrecords.inputs.bounding_boxes import boxes_from_xml, image_name, write_bounding_box_csv
from imagenet_tfrecords.download.archives import looks_like_html, parse_file_keys, select_archives
from imagenet_tfrecords.download.checksums import read_md5sum_file
from imagenet_tfrecords.download.fetch import check_base_url
from imagenet_tfrecords.download.pipeline import (KEEP_ARCHIVES, KEEP_BOTH, KEEP_EXTRACTED, ArchiveTask, DownloadConfig,
                                                  ensure_plan_fits, plan_archives, space_lines, space_needed)
from imagenet_tfrecords.download.space import GIB, ensure_free_space, free_bytes, size_text
from imagenet_tfrecords.inputs.tar_members import safe_path
from imagenet_tfrecords.errors import UserError
from imagenet_tfrecords.inputs.labels import load_bounding_boxes

LISTED = frozenset({"n01440764", "n02119789"})


def rounded(boxes: list) -> list:
    return [tuple(round(value, 6) for value in box) for box in boxes]


def test_boxes_are_relative_reordered_clamped_and_degenerate_ones_dropped() -> None:
    xml = annotation_xml("n01440764", "n01440764_1", (200, 100), [
        ("n01440764", (20, 10, 120, 90)),  # plain
        ("n01440764", (150, 80, 50, 20)),  # min and max swapped
        ("n01440764", (-10, -5, 260, 90)),  # reaches outside the image
        ("n01440764", (30, 10, 30, 50)),  # zero width: dropped
        ("n01440764", (250, 10, 300, 50)),  # entirely right of the image: clamps to zero width, dropped
    ])
    assert rounded(boxes_from_xml(xml, "n01440764", LISTED)) == [
        (0.1, 0.1, 0.6, 0.9), (0.25, 0.2, 0.75, 0.8), (0.0, 0.0, 1.0, 0.9)]


def test_boxes_of_another_listed_synset_are_skipped_other_names_kept() -> None:
    xml = annotation_xml("n01440764", "x", (100, 100), [
        ("n02119789", (0, 0, 50, 50)),  # another listed synset: skipped
        ("Scottish_deerhound", (10, 10, 60, 60)),  # not a wnid: kept, as process_bounding_boxes.py does
        ("n01440764", (20, 20, 70, 70)),
    ])
    assert rounded(boxes_from_xml(xml, "n01440764", LISTED)) == [(0.1, 0.1, 0.6, 0.6), (0.2, 0.2, 0.7, 0.7)]
    assert len(boxes_from_xml(xml, "n01440764")) == 3  # without a synset list nothing is skipped


@pytest.mark.parametrize("data", [b"<annotation><size>", b"<annotation><object/></annotation>",
                                  b"<annotation><size><width>0</width><height>5</height></size></annotation>"])
def test_malformed_annotation_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        boxes_from_xml(data, "n01440764")


def test_csv_is_sorted_and_read_back_by_the_builder(tmp_path: Path) -> None:
    assert image_name("n01440764/n01440764_10026.xml") == "n01440764_10026.JPEG"
    rows = [("b.JPEG", (0.5, 0.25, 1.0, 0.75)), ("a.JPEG", (0.0, 0.1, 0.123456, 0.9))]
    assert write_bounding_box_csv(tmp_path / "boxes.csv", rows) == 2
    assert (tmp_path / "boxes.csv").read_text() == "a.JPEG,0.0000,0.1000,0.1235,0.9000\nb.JPEG,0.5000,0.2500,1.0000,0.7500\n"
    assert load_bounding_boxes(tmp_path / "boxes.csv")["b.JPEG"] == [(0.5, 0.25, 1.0, 0.75)]


def test_md5sum_file_replaces_the_builtin_table(tmp_path: Path) -> None:
    path = tmp_path / "MD5SUMS"
    path.write_text("# mirror\n" + "A" * 32 + "  ILSVRC2012_img_val.tar\n" + "b" * 32 + " *dir/ILSVRC2012_devkit_t12.tar.gz\n")
    table = read_md5sum_file(path)
    assert table == {"ILSVRC2012_img_val.tar": "a" * 32, "ILSVRC2012_devkit_t12.tar.gz": "b" * 32}
    chosen = select_archives(parse_file_keys("val,devkit"), table, str(path))
    assert [(a.name, a.md5, a.size) for a in chosen] == [
        ("ILSVRC2012_devkit_t12.tar.gz", "b" * 32, None), ("ILSVRC2012_img_val.tar", "a" * 32, None)]
    with pytest.raises(UserError, match="no MD5 for ILSVRC2012_img_train.tar"):
        select_archives(parse_file_keys("train"), table, str(path))


def test_bad_md5sum_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "MD5SUMS"
    path.write_text("a" * 32 + "  ILSVRC2012_img_val.tar\nnot a checksum\n")
    with pytest.raises(UserError, match=r"MD5SUMS:2: expected"):
        read_md5sum_file(path)


def test_files_flag_and_builtin_table() -> None:
    assert [a.key for a in select_archives(parse_file_keys("train, bbox"), None)] == ["bbox", "train"]
    assert select_archives(["val"], None)[0].size == 6_744_924_160
    with pytest.raises(UserError, match="choose from devkit,bbox,val,train"):
        parse_file_keys("train,test")


def test_html_is_recognised_by_its_first_bytes() -> None:
    assert looks_like_html(b"\n  <!DOCTYPE HTML PUBLIC>") and looks_like_html(b"<html lang=en>")
    assert not looks_like_html(b"n01440764.tar\0\0\0") and not looks_like_html(b"\x1f\x8b\x08")


def test_not_enough_space_is_a_clear_error(tmp_path: Path) -> None:
    ensure_free_space(tmp_path, 1, "unpack x")
    with pytest.raises(UserError, match=r"not enough disk space to unpack ILSVRC2012_img_train.tar.*--target_dir"):
        ensure_free_space(tmp_path, 1 << 60, "unpack ILSVRC2012_img_train.tar")


@pytest.mark.parametrize("name, kind, why", [
    ("a/../../x", tarfile.REGTYPE, "'..'"), ("/etc/x", tarfile.REGTYPE, "absolute"), ("C:/x", tarfile.REGTYPE, "absolute"),
    ("a/b", tarfile.SYMTYPE, "a link"), ("a/c", tarfile.LNKTYPE, "a link"), ("a/d", tarfile.CHRTYPE, "device"),
    ("a/e", tarfile.FIFOTYPE, "FIFO")])
def test_unsafe_members_are_refused(name: str, kind: bytes, why: str) -> None:
    member = tarfile.TarInfo(name)
    member.type = kind
    with pytest.raises(UserError, match=why):
        safe_path(member, "some.tar")


def test_safe_members_map_inside() -> None:
    assert str(safe_path(tarfile.TarInfo("./a/b.JPEG"), "t")) == "a/b.JPEG"
    folder = tarfile.TarInfo("a")
    folder.type = tarfile.DIRTYPE
    assert safe_path(folder, "t") is None


@pytest.mark.parametrize("url, words", [("ftp://mirror/x", "http:// or https://"),
                                        ("https://bob:key123@mirror/x", "must not hold a user name or key")])
def test_base_url_must_be_http_without_credentials(url: str, words: str) -> None:
    with pytest.raises(UserError, match=words) as raised:
        check_base_url(url)
    assert "key123" not in str(raised.value)


def test_sizes_in_words() -> None:
    assert [size_text(n) for n in (None, 512, 1536, 5 * (1 << 20), 147_897_477_120)] == [
        "size unknown", "512 B", "1.5 KiB", "5.0 MiB", "137.7 GiB"]


def test_free_space_of_a_folder_not_made_yet_is_its_parent_s(tmp_path: Path) -> None:
    assert free_bytes(tmp_path / "not" / "yet") > 0
    assert not (tmp_path / "not").exists()


def test_space_needed_for_each_keep() -> None:
    """devkit 1 GiB to download (0.25 of it there already), val 6 GiB on disk, train 138 GiB to download."""
    archives = select_archives(parse_file_keys("devkit,val,train"), None)
    devkit, val, train = (ArchiveTask(a, Path(a.name), fetch, False, True, resume, size * GIB) for a, fetch, resume, size
                          in zip(archives, (True, False, True), (GIB // 4, 0, 0), (1, 6, 138)))
    tasks = [devkit, val, train]
    assert space_needed(tasks, KEEP_BOTH) == (0.75 + 138 + 1 + 6 + 138) * GIB  # downloads, then every unpack
    assert space_needed([dataclasses.replace(t, unpack=False) for t in tasks], KEEP_ARCHIVES) == (0.75 + 138) * GIB
    assert space_needed(tasks, KEEP_EXTRACTED) == (0.75 + 138 + 138) * GIB  # the peak: train and its copy


def test_a_plan_too_big_for_the_disk_names_keep_archives_when_that_fits(tmp_path: Path) -> None:
    train = select_archives(["train"], None)[0]
    size = int(free_bytes(tmp_path) * 0.6)  # the archive fits, the archive and its unpacked copy do not
    tasks = [ArchiveTask(train, tmp_path / train.name, True, False, True, 0, size)]
    with pytest.raises(UserError, match=r"not enough disk space to carry out this plan.*or pass --keep archives"):
        ensure_plan_fits(DownloadConfig(tmp_path / "t", (train,), "http://mirror"), tasks)
    ensure_plan_fits(DownloadConfig(tmp_path / "t", (train,), "http://mirror", keep=KEEP_ARCHIVES),
                     [dataclasses.replace(tasks[0], unpack=False)])


def test_a_plan_with_sizes_not_known_yet_needs_at_least_the_known_ones(tmp_path: Path) -> None:
    """Before the login (no HEAD yet) the devkit's size is unknown: the train tar alone is too big, said as a floor."""
    devkit, train = select_archives(["devkit", "train"], None)
    tasks = [ArchiveTask(devkit, tmp_path / devkit.name, True, False, True),
             ArchiveTask(train, tmp_path / train.name, True, False, False, 0, free_bytes(tmp_path) + GIB)]
    with pytest.raises(UserError, match=r"to carry out this plan: needs at least [\d.]+ GiB, [\d.]+ [KMG]iB free;"):
        ensure_plan_fits(DownloadConfig(tmp_path / "t", (devkit, train), "http://mirror", keep=KEEP_ARCHIVES), tasks)
    ensure_plan_fits(DownloadConfig(tmp_path / "t", (devkit,), "http://mirror"), tasks[:1])  # a floor of 0 fits


def test_space_lines_with_no_size_known_say_unknown(tmp_path: Path) -> None:
    devkit, bbox = select_archives(["devkit", "bbox"], None)
    tasks = [ArchiveTask(a, tmp_path / a.name, True, False, True) for a in (devkit, bbox)]
    first, keep = space_lines(DownloadConfig(tmp_path, (devkit, bbox), "http://mirror"), tasks)
    assert first.startswith(f"space needed: unknown (the server gives no size for {devkit.name}, {bbox.name}), ")
    assert keep.startswith("  to save space: --keep archives needs only about half (nothing unpacked")


def test_a_tarball_in_the_target_of_another_size_is_refused_before_any_hashing(tmp_path: Path) -> None:
    (tmp_path / "ILSVRC2012_img_val.tar").write_bytes(b"x" * 10_240)
    config = DownloadConfig(tmp_path, select_archives(["val"], None), "http://mirror")
    with pytest.raises(UserError) as raised:
        plan_archives(config)
    assert str(raised.value) == (
        f"{tmp_path / 'ILSVRC2012_img_val.tar'}: not the ILSVRC-2012 archive (10,240 bytes, expected 6,744,924,160 "
        "with MD5 29b22e2961454d5413ddabcf34fc5622); delete it (a re-run downloads it again) or replace it with "
        "a good copy, or pass the right --checksums")
