"""Resume trusts only what it can check, and nothing a build writes is ever half there.

Each test uses real files, real processes (killed, stopped, in a private mount namespace) and the
real CLI, and reads the shards back with TensorFlow.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, every_file, finished_shards, kill_build_after_first_train_shard, run_build_cli, sample_args
from imagenet_tfrecords.inputs import tars
from imagenet_tfrecords.inputs.bounding_boxes import write_bounding_box_csv
from imagenet_tfrecords.build import BuildConfig, run_build
from imagenet_tfrecords.output.dali_index import write_index
from imagenet_tfrecords.download.archives import BUILTIN_ARCHIVES
from imagenet_tfrecords.download.state import record_verified
from imagenet_tfrecords.images.prepare import ImageOptions
from imagenet_tfrecords.inputs.labels import DEFAULT_LABELS_FILE, DEFAULT_METADATA_FILE, load_class_table
from imagenet_tfrecords.output.manifest import JOURNAL_NAME, Manifest, remove_stale_temporaries
from imagenet_tfrecords.plan.shards import plan_split
from imagenet_tfrecords.sample import make_sample_tarballs
from imagenet_tfrecords.output.shard import ShardResult, write_shard
from imagenet_tfrecords.inputs.folders import scan_split
from imagenet_tfrecords.storage.folders import LocalFolder
from test_bad_input import WNIDS, add_bad_files, assert_one_line_error, make_tree
from test_resume import SLOW
from tfread import read_split

TEMPORARY = r"\.{}\.[0-9a-f]{{16}}\.tmp"  # what atomic writes name their temporaries
DEADLINE_SECONDS = 120  # only to stop a hung test; nothing asserts how long anything takes


def build(train: Path, output: Path, *extra: str | Path) -> subprocess.CompletedProcess:
    return run_build_cli("--train_directory", train, "--output_directory", output, "--train_shards", "3",
                         "--num_threads", "1", *extra, check=False)


def summary(result: subprocess.CompletedProcess, split: str = "train") -> dict[str, int]:
    """The summary table's row of `split`: images, written, shards, resumed, bad."""
    assert result.returncode == 0, result.stderr
    row = next(line.split() for line in result.stdout.splitlines() if line.startswith(split + " "))
    return dict(zip(("images", "written", "shards", "resumed", "bad"), map(int, row[1:6])))


def stored(output: Path, split: str = "train") -> dict[str, bytes]:
    """File name -> stored JPEG bytes, read back with tf.data."""
    return {r["image/filename"]: r["image/encoded"] for r in read_split(output, split)}


def another_photo(sample, wnid: str, taken: set[str]) -> bytes:
    """An ordinary sample JPEG of `wnid` that is not in the tree (different bytes, likely another size)."""
    return next(p.read_bytes() for p in sorted((sample.train_dir / wnid).iterdir())[5:] if p.name not in taken)


def flip_a_scan_byte(data: bytes) -> bytes:
    """The same JPEG, same length, with one entropy-coded byte changed (no marker made or broken)."""
    middle = len(data) // 2
    while 0xFF in (data[middle - 1], data[middle], data[middle] ^ 1):
        middle += 1
    return data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]


# --- item 3: a shard's digest covers what it was built from --------------------------------------

def test_a_changed_input_file_is_written_again(sample, tmp_path: Path) -> None:
    train, output = make_tree(sample, tmp_path / "train"), tmp_path / "out"
    assert summary(build(train, output))["resumed"] == 0
    victim = sorted((train / WNIDS[0]).iterdir())[0]
    new = another_photo(sample, WNIDS[0], {p.name for p in (train / WNIDS[0]).iterdir()})
    victim.write_bytes(new)

    row = summary(build(train, output))
    assert (row["resumed"], row["written"]) == (2, 2)  # only the shard holding the file
    assert stored(output)[victim.name] == new


def test_the_same_names_from_another_tree_are_written_again(sample, tmp_path: Path) -> None:
    first, output = make_tree(sample, tmp_path / "first"), tmp_path / "out"
    second = tmp_path / "second"
    shutil.copytree(first, second)  # same names, sizes and mtimes
    victim = sorted((second / WNIDS[1]).iterdir())[0]
    before = victim.stat()
    changed = flip_a_scan_byte(victim.read_bytes())
    victim.write_bytes(changed)
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (victim.stat().st_size, victim.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    summary(build(first, output))

    row = summary(build(second, output))
    assert row["resumed"] == 0
    assert stored(output)[victim.name] == changed


def test_an_archive_changed_in_place_is_written_again(sample, tmp_path: Path) -> None:
    tar = make_sample_tarballs(sample, tmp_path / "tars").train_tar
    output = tmp_path / "out"
    args = ("--train_tar", tar, "--output_directory", output, "--train_shards", "4")
    assert summary(run_build_cli(*args))["resumed"] == 0
    original = sorted((sample.train_dir / WNIDS[0]).iterdir())[3]
    data = tar.read_bytes()
    offset = data.index(original.read_bytes())
    changed = flip_a_scan_byte(original.read_bytes())
    with open(tar, "r+b") as handle:  # same length, same offsets: only the tar's mtime tells
        handle.seek(offset)
        handle.write(changed)

    assert summary(run_build_cli(*args))["resumed"] == 0
    assert stored(output)[original.name] == changed


def test_a_repaired_bad_image_is_taken_in(sample, tmp_path: Path) -> None:
    train, output = make_tree(sample, tmp_path / "train"), tmp_path / "out"
    truncated, html = add_bad_files(train)
    truncated.unlink()
    assert summary(build(train, output, "--skip_bad_images"))["bad"] == 1
    assert str(html) in (output / "bad_images.tsv").read_text()
    good = another_photo(sample, WNIDS[1], {p.name for p in (train / WNIDS[1]).iterdir()})
    html.write_bytes(good)

    row = summary(build(train, output, "--skip_bad_images"))
    assert (row["resumed"], row["bad"]) == (2, 0)
    assert stored(output)[html.name] == good
    assert not (output / "bad_images.tsv").exists()


def test_a_shard_that_left_images_out_is_not_complete_without_skip_bad_images(sample, tmp_path: Path) -> None:
    train, output = make_tree(sample, tmp_path / "train"), tmp_path / "out"
    truncated, html = add_bad_files(train)
    truncated.unlink()
    assert summary(build(train, output, "--skip_bad_images"))["bad"] == 1

    assert_one_line_error(build(train, output), str(html), "not an image file", "--skip_bad_images")


def test_the_worker_records_the_files_it_read(sample, tmp_path: Path) -> None:
    """A file changed between the plan and the worker: the digest is of what was read, so the next plan
    of the same files matches it, and the earlier plan does not."""
    train = make_tree(sample, tmp_path / "train")
    classes = load_class_table(DEFAULT_LABELS_FILE, DEFAULT_METADATA_FILE, 1)
    plan = plan_split("train", scan_split("train", train, classes, None), 1)
    planned = plan.spec(0, classes, {}, tmp_path, ImageOptions())
    victim = Path(planned.items[0].path)
    victim.write_bytes(another_photo(sample, victim.parent.name, {p.name for p in victim.parent.iterdir()}))

    result = write_shard(planned)
    assert result.digest == plan.spec(0, classes, {}, tmp_path, ImageOptions()).digest() != planned.digest()


# --- item 13: every split's bad images are kept ---------------------------------------------------

def test_bad_images_of_every_split_are_kept(sample, tmp_path: Path) -> None:
    train, output = make_tree(sample, tmp_path / "train"), tmp_path / "out"
    truncated, html = add_bad_files(train)
    validation = tmp_path / "validation"
    shutil.copytree(sample.validation_dir, validation)
    bad_validation = sorted(validation.iterdir())[2]
    bad_validation.write_bytes(b"<html>Please log in</html>")
    shards = ("--train_shards", "3", "--validation_shards", "2", "--skip_bad_images", "--output_directory", output)
    summary(run_build_cli("--train_directory", train, *shards))

    summary(run_build_cli("--validation_directory", validation, *shards), "validation")
    rows = (output / "bad_images.tsv").read_text().splitlines()
    assert rows[0] == "split\tpath\treason"
    assert [row.split("\t")[:2] for row in rows[1:]] == [
        ["train", str(truncated)], ["train", str(html)], ["validation", str(bad_validation)]]


def test_a_bad_image_name_that_is_not_utf8_is_reported_as_its_bytes(sample, tmp_path: Path) -> None:
    train, output = make_tree(sample, tmp_path / "train"), tmp_path / "out"
    name = os.fsencode(train / WNIDS[0]) + b"/caf\xe9.JPEG"  # Latin-1, as old archives named files
    with open(name, "wb") as handle:
        handle.write(b"<html>Please log in</html>")
    assert summary(build(train, output, "--skip_bad_images"))["bad"] == 1

    report = (output / "bad_images.tsv").read_bytes().splitlines()
    assert report[1].split(b"\t")[:2] == [b"train", name]


# --- item 15: a journal, folded in; a torn line is no error ---------------------------------------

def result(name: str) -> ShardResult:
    return ShardResult("train", int(name.split("-")[1]), name, "d" * 64, 10, 1000, "s" * 64, ())


def test_recording_a_shard_appends_one_line_and_leaves_manifest_json_alone(tmp_path: Path) -> None:
    with Manifest.open(tmp_path, {"options": 1}) as manifest:
        before = (tmp_path / "manifest.json").stat()
        for index in range(50):
            manifest.record(result(f"train-{index:05d}-of-00050"))
            lines = (tmp_path / JOURNAL_NAME).read_text().splitlines()
            assert len(lines) == index + 1 and json.loads(lines[-1])["name"] == f"train-{index:05d}-of-00050"
        after = (tmp_path / "manifest.json").stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not (tmp_path / JOURNAL_NAME).exists()
    assert len(json.loads((tmp_path / "manifest.json").read_text())["shards"]) == 50


def test_a_killed_build_with_a_torn_journal_line_resumes(sample, tmp_path: Path, tmp_path_factory) -> None:
    done = kill_build_after_first_train_shard(sample_args(sample, tmp_path, *SLOW), tmp_path)
    in_manifest_json = json.loads((tmp_path / "manifest.json").read_text())["shards"]
    assert not [name for name in in_manifest_json if name.startswith("train")]  # they are in the journal
    with open(tmp_path / JOURNAL_NAME, "a") as journal:
        journal.write('{"bad_images": [], "digest": "12')  # a power loss mid-append
    assert finished_shards(tmp_path) == done

    result = run_build_cli(*sample_args(sample, tmp_path, *SLOW))
    assert "Traceback" not in result.stderr
    assert re.search(rf"{JOURNAL_NAME}: line {len(done) + 1} is damaged", result.stderr)
    assert sum(summary(result, split)["resumed"] for split in ("train", "validation")) == len(done)
    assert len(read_split(tmp_path, "train")) == 100 and len(read_split(tmp_path, "validation")) == 20
    assert len(json.loads((tmp_path / "manifest.json").read_text())["shards"]) == 12
    assert not (tmp_path / JOURNAL_NAME).exists()
    reference = tmp_path_factory.mktemp("uninterrupted")
    run_build_cli(*sample_args(sample, reference, *SLOW))
    assert every_file(tmp_path) == every_file(reference)  # every file byte for byte, the manifest and JSON too


# --- items 11 and 12: temporaries are a writer's own; the index directory is locked ---------------

WRITE_SHARD = "import pickle, sys; from imagenet_tfrecords.output.shard import write_shard; write_shard(pickle.load(open(sys.argv[1], 'rb')))"


def _start_writer(spec_file: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITE_SHARD, str(spec_file)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_once_writing(process: subprocess.Popen, output: Path) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not list(output.glob(".*.tmp")):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGSTOP)


def test_a_worker_left_over_from_an_earlier_run_cannot_put_a_file_in_place(sample, tmp_path: Path) -> None:
    train, output = make_tree(sample, tmp_path / "train", per_class=10), tmp_path / "out"
    output.mkdir()
    classes = load_class_table(DEFAULT_LABELS_FILE, DEFAULT_METADATA_FILE, 1)
    slow = ImageOptions(resize=True, height=1500, width=1500)
    spec = plan_split("train", scan_split("train", train, classes, None), 1).spec(0, classes, {}, output, slow)
    (tmp_path / "spec.pickle").write_bytes(pickle.dumps(spec))
    final = output / spec.name
    leftover = _start_writer(tmp_path / "spec.pickle")  # a worker of a run that was killed
    current = None
    try:
        _stop_once_writing(leftover, output)
        assert remove_stale_temporaries(output)  # a new run starts: the old temporary goes
        current = _start_writer(tmp_path / "spec.pickle")  # and the new run writes the same shard
        _stop_once_writing(current, output)
        leftover.send_signal(signal.SIGCONT)
        leftover.wait(DEADLINE_SECONDS)
        assert not final.exists(), "the left-over worker renamed the new run's unfinished file into place"
        current.send_signal(signal.SIGCONT)
        assert current.wait(DEADLINE_SECONDS) == 0
    finally:
        for process in (leftover, current):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    assert sorted(stored(output)) == sorted(item.filename for item in spec.items)
    assert not list(output.glob(".*.tmp"))


def test_an_index_directory_outside_the_output_is_locked_with_the_build(sample, tmp_path: Path) -> None:
    indexes, first, second = tmp_path / "indexes", tmp_path / "first", tmp_path / "second"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "build_imagenet_data.py"),
         *map(str, sample_args(sample, first, *SLOW, "--index_directory", indexes))],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not finished_shards(first):  # the first build is writing, so it holds its locks
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        result = run_build_cli(*sample_args(sample, second, "--index_directory", indexes), check=False)
        assert process.poll() is None, "the first build ended before the second one was started"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert_one_line_error(result, f"error: {indexes}: another build is writing into this directory")
    assert not second.exists()  # the refused build leaves nothing, not even the folder it made


# --- items 9 and 10: one line for a directory that cannot be written; writes are durable ----------

def in_private_mount(script: str, directory: Path, *command: str | Path) -> subprocess.CompletedProcess:
    """Run `command` with `script` (sh; $0 is `directory`) mounting over `directory` first, seen by it alone."""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(directory),
                           sys.executable, str(REPO / "build_imagenet_data.py"), *map(str, command)],
                          cwd=REPO, capture_output=True, text=True, timeout=DEADLINE_SECONDS)


def test_an_output_directory_that_cannot_be_written_is_one_line(sample, tmp_path: Path) -> None:
    train, output = make_tree(sample, tmp_path / "train"), tmp_path / "out"
    output.mkdir()
    read_only = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    result = in_private_mount(read_only, output, "--train_directory", train, "--output_directory", output,
                              "--train_shards", "2")
    assert_one_line_error(result, f"error: {output}: cannot write into this directory (Read-only file system)")


def test_a_full_disk_while_saving_the_manifest_is_one_line(sample, tmp_path: Path) -> None:
    train, output = make_tree(sample, tmp_path / "train"), tmp_path / "out"
    output.mkdir()
    full = ('mount -t tmpfs -o size=64k tmpfs "$0" && { head -c 1M /dev/zero > "$0/fill" 2>/dev/null; '
            '"$@"; status=$?; ls -A "$0"; exit $status; }')
    result = in_private_mount(full, output, "--train_directory", train, "--output_directory", output,
                              "--train_shards", "2")
    assert_one_line_error(result, f"error: {output}/manifest.json: cannot write the manifest (No space left on device)")
    assert result.stdout.split() == ["fill"]  # no temporary, lock or empty index folder left behind


@pytest.fixture
def durable_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Every fsync (the path of the file or directory) and rename in this process, in order."""
    events: list[tuple[str, ...]] = []
    fsync, replace = os.fsync, os.replace

    def traced_fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def traced_replace(source, target) -> None:
        events.append(("replace", str(source), str(target)))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", traced_fsync)
    monkeypatch.setattr(os, "replace", traced_replace)
    return events


def assert_written_durably(events: list[tuple[str, ...]], final: Path) -> None:
    """`final` came from a temporary of its own, fsync'd, renamed, then its directory fsync'd."""
    renames = [i for i, event in enumerate(events) if event[0] == "replace" and event[2] == str(final)]
    assert renames, f"{final} was not written through a temporary"
    for i in renames:
        temporary = events[i][1]
        assert re.fullmatch(TEMPORARY.format(re.escape(final.name)), Path(temporary).name)
        assert events[i - 1] == ("fsync", temporary) and events[i + 1] == ("fsync", str(final.parent))


def test_a_build_writes_every_file_durably(sample, tmp_path: Path, durable_writes) -> None:
    train, output = make_tree(sample, tmp_path / "train"), tmp_path / "out"
    truncated, html = add_bad_files(train)
    run_build(BuildConfig(output, train_dir=train, train_shards=3, skip_bad_images=True, index_dir=output / "idx"))

    finals = [output / "manifest.json", output / "bad_images.tsv",
              *[p for p in output.iterdir() if "-of-" in p.name], *(output / "idx").glob("*.idx")]
    assert len(finals) == 2 + 3 + 3
    for final in finals:
        assert_written_durably(durable_writes, final)
    journal_syncs = [event for event in durable_writes if event == ("fsync", str(output / JOURNAL_NAME))]
    assert len(journal_syncs) == 3  # one per finished shard
    assert not list(output.glob(".*.tmp")) and not list((output / "idx").glob(".*.tmp"))


def test_state_files_are_written_durably(sample, copy_build: Path, tmp_path: Path, durable_writes) -> None:
    archive, target = BUILTIN_ARCHIVES["devkit"], tmp_path / "download"
    (target / archive.name).parent.mkdir(parents=True)
    (target / archive.name).write_bytes(b"an archive")
    record_verified(target, archive, target / archive.name)
    write_bounding_box_csv(tmp_path / "boxes.csv", [("n01440764_1.JPEG", (0.1, 0.2, 0.3, 0.4))])
    tar = make_sample_tarballs(sample, tmp_path / "tars").validation_tar
    tars.index_tar(tar, LocalFolder(tmp_path / "cache"), nested=False)
    shard = next(p for p in copy_build.iterdir() if "-of-" in p.name)
    (tmp_path / "idx").mkdir()
    write_index(shard, tmp_path / "idx")

    for final in [*(target / ".imagenet_download").iterdir(), tmp_path / "boxes.csv", *(tmp_path / "cache").iterdir(),
                  tmp_path / "idx" / f"{shard.name}.idx"]:
        assert_written_durably(durable_writes, final)
