"""download_imagenet.py end to end: a real HTTP server with faults, a real terminal, the real builder."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import io
import os
import re
import shlex
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pexpect
import pytest

from archive_server import BUSY, BUSY_ONCE, CORRUPT, CUT_ONCE, FORBIDDEN, HTML, HTML_AS_TAR, NO_LENGTH, ArchiveServer
from ilsvrc_archives import BBOX, DEVKIT, TRAIN, VAL, WNIDS, Archives, make_archives, tar_bytes
from conftest import run_build_cli
from test_bad_input import assert_one_line_error

from imagenet_tfrecords.download.archives import BUILTIN_ARCHIVES
from imagenet_tfrecords.download.credentials import Credentials
from imagenet_tfrecords.download.fetch import RetryPolicy, download as fetch_archive, open_source
from imagenet_tfrecords.download.space import free_bytes, size_text
from imagenet_tfrecords.errors import UserError

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "download_imagenet.py"
USER, SECRET = "alice", "s3cret-Key-0451"


@pytest.fixture(scope="module")
def archives() -> Archives:
    return make_archives()


@pytest.fixture(scope="module")
def inputs(archives: Archives, tmp_path_factory) -> dict[str, Path]:
    """The checksums file, the validation labels of the small val tar, and a labels file of its synsets."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "MD5SUMS").write_text(archives.md5sum())
    (root / "val_labels.txt").write_text("\n".join(archives.validation_labels) + "\n")
    (root / "synsets.txt").write_text("\n".join(WNIDS) + "\n")
    (root / "home").mkdir()
    return {"checksums": root / "MD5SUMS", "val_labels": root / "val_labels.txt",
            "synsets": root / "synsets.txt", "home": root / "home"}


@pytest.fixture
def server(archives: Archives):
    server = ArchiveServer(dict(archives.files), USER, SECRET)
    yield server
    server.close()


def environment(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGENET_")}
    env.update(HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def download(inputs: dict[str, Path], *args: str, home: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """Run the real script without a terminal (stdin closed, no controlling tty); `inputs["checksums"]` None:
    the built-in MD5 table and sizes."""
    checksums = ["--checksums", str(inputs["checksums"])] if inputs["checksums"] else []
    command = [sys.executable, str(SCRIPT), *checksums, "--validation_labels_file", str(inputs["val_labels"]), *args]
    return subprocess.run(command, cwd=REPO, env=environment(home or inputs["home"], **env), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180, start_new_session=True)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def assert_unpacked(target: Path, archives: Archives) -> None:
    for wnid, names in archives.train_images.items():
        assert sorted(p.name for p in (target / "train" / wnid).iterdir()) == sorted(names)
    validation = sorted(p.relative_to(target / "validation").as_posix() for p in (target / "validation").rglob("*.JPEG"))
    assert validation == sorted(f"{wnid}/ILSVRC2012_val_{n:08d}.JPEG"
                                for n, wnid in enumerate(archives.validation_labels, 1))
    assert (target / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt").is_file()
    expected_boxes = sorted("%s,%.4f,%.4f,%.4f,%.4f" % (image, *box) for image, box in archives.boxes.items())
    assert (target / "bounding_boxes.csv").read_text().splitlines() == expected_boxes


@pytest.fixture(scope="module")
def downloaded(archives: Archives, inputs: dict[str, Path], tmp_path_factory):
    """All four archives downloaded and unpacked once, with the key from the environment; and the server."""
    server = ArchiveServer(dict(archives.files), USER, SECRET)
    target = tmp_path_factory.mktemp("download") / "imagenet"
    try:
        result = download(inputs, "--base_url", server.base_url, "--target_dir", str(target), "--yes",
                          IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=SECRET)
        yield target, server, result
    finally:
        server.close()


def test_downloads_verifies_and_unpacks_the_ilsvrc_layout(downloaded, archives: Archives) -> None:
    target, server, result = downloaded
    assert result.returncode == 0, result.stderr
    assert_unpacked(target, archives)
    for name, data in archives.files.items():
        assert md5(target / name) == hashlib.md5(data).hexdigest()
    assert not list(target.glob("*.part"))
    assert SECRET not in result.stdout + result.stderr
    assert all(r.authorized for r in server.requests)  # the login goes with each request: no 401 round trips
    assert len({r.client_port for r in server.requests}) == 1  # one kept-alive connection for all of them


def test_rerun_downloads_and_unpacks_nothing(downloaded, inputs: dict[str, Path]) -> None:
    target, server, first = downloaded
    assert first.returncode == 0, first.stderr
    requests_before = len(server.requests)
    mtimes = {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()}
    result = download(inputs, "--base_url", server.base_url, "--target_dir", str(target),
                      IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=SECRET)
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout
    assert len(server.requests) == requests_before
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()} == mtimes


def test_unpacked_tree_builds_into_shards_that_tf_data_reads(downloaded, archives: Archives, inputs: dict[str, Path],
                                                             tmp_path: Path) -> None:
    target, _, first = downloaded
    assert first.returncode == 0, first.stderr
    output = tmp_path / "tfrecords"
    build = subprocess.run(
        [sys.executable, "build_imagenet_data.py", "--train_directory", str(target / "train"),
         "--validation_directory", str(target / "validation"), "--output_directory", str(output),
         "--train_shards", "2", "--validation_shards", "1", "--labels_file", str(inputs["synsets"]),
         "--validation_labels_file", str(inputs["val_labels"]),  # the class folders are checked against it
         "--bounding_box_file", str(target / "bounding_boxes.csv")],
        cwd=REPO, env=environment(inputs["home"]), capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf

    features = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/filename": tf.io.FixedLenFeature([], tf.string),
        "image/class/synset": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    }

    def read(split: str) -> dict[str, dict]:
        files = sorted(glob.glob(str(output / f"{split}-*")))
        records = {}
        for raw in tf.data.TFRecordDataset(files):
            example = tf.io.parse_single_example(raw, features)
            image = tf.io.decode_jpeg(example["image/encoded"], channels=3)
            records[example["image/filename"].numpy().decode()] = {
                "synset": example["image/class/synset"].numpy().decode(),
                "label": int(example["image/class/label"]),
                "shape": tuple(image.shape),
                "xmin": tf.sparse.to_dense(example["image/object/bbox/xmin"]).numpy().tolist(),
                "ymax": tf.sparse.to_dense(example["image/object/bbox/ymax"]).numpy().tolist(),
            }
        return records

    train, validation = read("train"), read("validation")
    assert len(glob.glob(str(output / "train-*-of-00002"))) == 2
    assert {name: r["synset"] for name, r in train.items()} == {
        name: wnid for wnid, names in archives.train_images.items() for name in names}
    assert all(r["label"] == WNIDS.index(r["synset"]) + 1 and r["shape"][2] == 3 for r in train.values())
    for image, (xmin, _, _, ymax) in archives.boxes.items():
        assert train[image]["xmin"] == pytest.approx([xmin], abs=1e-4)
        assert train[image]["ymax"] == pytest.approx([ymax], abs=1e-4)
    assert {name: r["synset"] for name, r in validation.items()} == {
        f"ILSVRC2012_val_{n:08d}.JPEG": wnid for n, wnid in enumerate(archives.validation_labels, 1)}


def test_cut_connection_resumes_with_range_and_the_right_md5(server: ArchiveServer, archives: Archives,
                                                            inputs: dict[str, Path], tmp_path: Path) -> None:
    server.faults[VAL] = CUT_ONCE
    target = tmp_path / "imagenet"
    result = download(inputs, "--base_url", server.base_url, "--target_dir", str(target), "--files", "val",
                      "--flat_validation", "--yes", IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=SECRET)
    assert result.returncode == 0, result.stderr
    gets = server.gets(VAL)
    assert [g.range for g in gets] == [None, f"bytes={len(archives.files[VAL]) // 2}-"]
    assert md5(target / VAL) == hashlib.md5(archives.files[VAL]).hexdigest()
    assert len(list((target / "validation").glob("ILSVRC2012_val_*.JPEG"))) == len(archives.validation_labels)


def test_partial_file_of_an_earlier_run_is_resumed(server: ArchiveServer, archives: Archives,
                                                   inputs: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "imagenet"
    target.mkdir()
    (target / (TRAIN + ".part")).write_bytes(archives.files[TRAIN][:5000])
    result = download(inputs, "--base_url", server.base_url, "--target_dir", str(target), "--files", "train",
                      "--no_extract", "--yes", IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=SECRET)
    assert result.returncode == 0, result.stderr
    assert [g.range for g in server.gets(TRAIN)] == ["bytes=5000-"]
    assert md5(target / TRAIN) == hashlib.md5(archives.files[TRAIN]).hexdigest()
    assert not (target / "train").exists() and not (target / (TRAIN + ".part")).exists()


@pytest.mark.parametrize("fault, name, words", [(CORRUPT, DEVKIT, "MD5"), (HTML, VAL, "HTML page"),
                                                (HTML_AS_TAR, VAL, "HTML page")])
def test_bad_download_is_a_one_line_error_naming_the_file(server: ArchiveServer, inputs: dict[str, Path],
                                                          tmp_path: Path, fault: str, name: str, words: str) -> None:
    server.faults[name] = fault
    target = tmp_path / "imagenet"
    result = download(inputs, "--base_url", server.base_url, "--target_dir", str(target), "--files", "devkit,val",
                      "--yes", IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=SECRET)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and name in error and words in error
    assert not (target / name).exists() and not (target / (name + ".part")).exists()
    assert not (target / "validation").exists()


def test_wrong_access_key_is_one_line_without_the_key(server: ArchiveServer, inputs: dict[str, Path],
                                                      tmp_path: Path) -> None:
    wrong = "not-the-Key-7788"
    result = download(inputs, "--base_url", server.base_url, "--target_dir", str(tmp_path / "t"), "--yes",
                      IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=wrong)
    assert result.returncode == 1
    assert "wrong user ID or access key" in result.stderr.strip().splitlines()[-1]
    assert wrong not in result.stdout + result.stderr
    assert any(r.range is None and not r.authorized for r in server.requests)
    assert not list((tmp_path / "t").glob("ILSVRC2012_*"))


def test_prompts_on_a_terminal_hide_the_access_key(server: ArchiveServer, archives: Archives,
                                                   inputs: dict[str, Path], tmp_path: Path) -> None:
    server.faults[VAL] = CUT_ONCE  # a warning while the progress bar is on screen
    target = tmp_path / "imagenet"
    child = pexpect.spawn(
        sys.executable,
        [str(SCRIPT), "--base_url", server.base_url, "--files", "devkit,val", "--checksums", str(inputs["checksums"]),
         "--validation_labels_file", str(inputs["val_labels"])],
        cwd=str(REPO), env=environment(inputs["home"]), encoding="utf-8", timeout=60, dimensions=(40, 200))
    transcript = io.StringIO()
    child.logfile_read = transcript
    try:
        child.expect("Target directory")
        child.sendline(str(target))
        child.expect("ImageNet user ID")
        child.sendline(USER)
        child.expect("Access key for alice")
        child.sendline(SECRET)
        child.expect(r"Go ahead\? \[y/N\]")
        child.sendline("y")
        child.expect(pexpect.EOF, timeout=120)
    finally:
        child.close()
    assert child.exitstatus == 0, transcript.getvalue()
    shown = transcript.getvalue()
    assert USER in shown  # what is typed at a normal prompt is echoed back by the terminal...
    assert SECRET not in shown  # ...but not the access key
    assert "B/s" in shown  # the progress bars
    warning = re.search(r"\d\d:\d\d:\d\d ILSVRC2012_img_val.tar: connection lost", shown)
    assert warning, shown
    line_so_far = shown[:warning.start()].rsplit("\n", 1)[-1].rsplit("\r", 1)[-1]
    assert line_so_far == "", f"log line glued onto the bar: {line_so_far!r}"  # written through the bar
    assert md5(target / VAL) == hashlib.md5(archives.files[VAL]).hexdigest()
    assert len(list((target / "validation").rglob("*.JPEG"))) == len(archives.validation_labels)


def test_no_terminal_and_no_user_fails_at_once(server: ArchiveServer, inputs: dict[str, Path], tmp_path: Path) -> None:
    result = download(inputs, "--base_url", server.base_url, "--target_dir", str(tmp_path / "t"), "--yes")
    assert result.returncode == 1
    assert "no terminal" in result.stderr and "--user" in result.stderr
    assert server.requests == []


def test_no_terminal_and_no_target_dir_fails_at_once(inputs: dict[str, Path]) -> None:
    result = download(inputs, "--base_url", "http://127.0.0.1:9/x", "--yes")
    assert result.returncode == 1
    assert "--target_dir" in result.stderr.strip().splitlines()[-1]


def test_credentials_from_netrc(server: ArchiveServer, archives: Archives, inputs: dict[str, Path], tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text(f"machine 127.0.0.1 login {USER} password {SECRET}\n")
    (home / ".netrc").chmod(0o600)
    target = tmp_path / "imagenet"
    result = download(inputs, "--base_url", server.base_url, "--target_dir", str(target), "--files", "devkit",
                      "--yes", home=home)
    assert result.returncode == 0, result.stderr
    assert (target / "ILSVRC2012_devkit_t12" / "readme.txt").is_file()
    assert SECRET not in result.stdout + result.stderr


def test_from_dir_imports_tarballs_without_network_or_login(archives: Archives, inputs: dict[str, Path],
                                                            tmp_path: Path) -> None:
    tarballs = tmp_path / "tarballs"
    tarballs.mkdir()
    for name, data in archives.files.items():
        (tarballs / name).write_bytes(data)
    target = tmp_path / "imagenet"
    result = download(inputs, "--from_dir", str(tarballs), "--target_dir", str(target), "--yes",
                      "--base_url", "http://127.0.0.1:9/nothing-listens-here")
    assert result.returncode == 0, result.stderr
    assert_unpacked(target, archives)
    assert not list(target.glob("ILSVRC2012_*.tar*"))  # unpacked from DIR, not copied


def test_from_dir_with_a_wrong_checksum_names_the_file(archives: Archives, inputs: dict[str, Path], tmp_path: Path) -> None:
    data = archives.files[DEVKIT]
    (tmp_path / DEVKIT).write_bytes(data[:20] + bytes([data[20] ^ 0xFF]) + data[21:])
    result = download(inputs, "--from_dir", str(tmp_path), "--files", "devkit", "--target_dir", str(tmp_path / "t"), "--yes")
    assert_one_line_error(result, f"{tmp_path / DEVKIT}: not the file --checksums lists (MD5 is "
                          f"{md5(tmp_path / DEVKIT)}, expected {hashlib.md5(data).hexdigest()}); put the real {DEVKIT} "
                          f"in {tmp_path}, leave 'devkit' out of --files, or pass the right --checksums")
    assert not (tmp_path / "t").exists()  # made by the run, left empty: removed


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("case", ["dotdot", "symlink", "hardlink", "absolute", "dotdot_in_class_tar"])
def test_malicious_tar_is_refused_and_writes_nothing_outside(case: str, archives: Archives, inputs: dict[str, Path],
                                                              tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    tarballs, target = sandbox / "tarballs", sandbox / "target"
    tarballs.mkdir(parents=True)
    outside = tmp_path / "evil"
    readme = ("ILSVRC2012_devkit_t12/readme.txt", b"ok\n")
    if case == "dotdot":
        name, data = DEVKIT, tar_bytes([readme, ("../../evil", b"pwned")], compress=True)
    elif case == "symlink":
        name, data = DEVKIT, tar_bytes([readme, _link("ILSVRC2012_devkit_t12/data", str(tmp_path))], compress=True)
    elif case == "hardlink":
        name, data = DEVKIT, tar_bytes([readme, _link("ILSVRC2012_devkit_t12/x", str(outside), tarfile.LNKTYPE)], True)
    elif case == "absolute":
        name, data = VAL, tar_bytes([("ILSVRC2012_val_00000001.JPEG", b"x"), (str(outside), b"pwned")])
    else:
        inner = tar_bytes([("n01440764_1.JPEG", b"x"), ("../../../../evil", b"pwned")])
        name, data = TRAIN, tar_bytes([("n01440764.tar", inner)])
    (tarballs / name).write_bytes(data)
    (tmp_path / "MD5SUMS").write_text(f"{hashlib.md5(data).hexdigest()}  {name}\n")
    before = sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(target))
    key = {DEVKIT: "devkit", VAL: "val", TRAIN: "train"}[name]
    result = download({**inputs, "checksums": tmp_path / "MD5SUMS"}, "--from_dir", str(tarballs),
                      "--files", key, "--target_dir", str(target), "--flat_validation", "--yes")
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert "refusing member" in error and name in error
    assert not outside.exists()
    assert sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(target)) == before
    assert not [p for p in target.rglob("*") if p.is_symlink()]
    assert not list((target / ".imagenet_download").glob("*.unpacked"))


def test_validation_labels_must_be_wnids(archives: Archives, inputs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / VAL).write_bytes(archives.files[VAL])
    labels = tmp_path / "labels.txt"
    labels.write_text("n01440764\n../../escape\n")
    result = download({**inputs, "val_labels": labels}, "--from_dir", str(tmp_path), "--files", "val",
                      "--target_dir", str(tmp_path / "t"), "--yes")
    assert result.returncode == 1
    assert f"{labels}:2: expected a wnid" in result.stderr
    assert not (tmp_path / "t" / "validation").exists() and not (tmp_path / "escape").exists()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: bound, then closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("host, problem", [("refused", "cannot connect (Connection refused)"),
                                           ("archives.invalid", "cannot resolve the host name")])
def test_refused_or_unknown_host_fails_after_one_retry(host: str, problem: str, inputs: dict[str, Path],
                                                       tmp_path: Path) -> None:
    base_url = f"http://{f'127.0.0.1:{closed_port()}' if host == 'refused' else host}/data"
    target = tmp_path / "imagenet"
    result = download(inputs, "--base_url", base_url, "--target_dir", str(target), "--files", "devkit,val", "--yes",
                      IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=SECRET)
    assert_one_line_error(result, f"{base_url}/{DEVKIT}: {problem}", "--base_url", "--from_dir")
    assert len(re.findall(f"{DEVKIT}: {re.escape(problem)}.*; trying again", result.stderr)) == 1  # each retry is logged
    assert ".part" not in result.stderr
    assert not target.exists()


def test_retry_after_is_honoured(server: ArchiveServer, archives: Archives, inputs: dict[str, Path],
                                 tmp_path: Path) -> None:
    server.faults[DEVKIT] = BUSY_ONCE
    target = tmp_path / "imagenet"
    result = download(inputs, "--base_url", server.base_url, "--target_dir", str(target), "--files", "devkit",
                      "--yes", IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=SECRET)
    assert result.returncode == 0, result.stderr
    busy, served = server.gets(DEVKIT)  # exactly two: the 503, then the file
    assert served.at - busy.at >= 1.0  # it waited the second the server asked for (a first retry is immediate)
    assert "HTTP 503; waiting 1 s as the server asks" in result.stderr
    assert md5(target / DEVKIT) == hashlib.md5(archives.files[DEVKIT]).hexdigest()


def test_a_server_busy_every_time_is_one_error_after_the_policy_s_tries(server: ArchiveServer, archives: Archives,
                                                                         tmp_path: Path) -> None:
    server.faults[DEVKIT] = BUSY
    archive = dataclasses.replace(BUILTIN_ARCHIVES["devkit"], md5=hashlib.md5(archives.files[DEVKIT]).hexdigest())
    with open_source(server.base_url, Credentials(USER, SECRET), RetryPolicy(attempts=2, first_delay=0)) as source, \
            pytest.raises(UserError, match=r"HTTP 503 Service Unavailable 2 times in a row; the server is busy or "
                                           r"down, run again later$"):
        fetch_archive(source, archive, tmp_path / DEVKIT)
    assert len(server.gets(DEVKIT)) == 2
    assert list(tmp_path.iterdir()) == []


def test_plan_lists_sizes_and_space_before_asking(server: ArchiveServer, archives: Archives,
                                                  inputs: dict[str, Path], tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    target = home / "imagenet-data"  # the offered default: in the home folder, not the current one
    child = pexpect.spawn(
        sys.executable,
        [str(SCRIPT), "--base_url", server.base_url, "--files", "devkit,val", "--checksums", str(inputs["checksums"]),
         "--validation_labels_file", str(inputs["val_labels"])],
        cwd=str(REPO), env=environment(home, IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=SECRET), encoding="utf-8",
        timeout=60, dimensions=(40, 250))
    transcript = io.StringIO()
    child.logfile_read = transcript
    try:
        child.expect(re.escape(f"Target directory [{target}]: "))
        child.sendline("")
        child.expect(r"Go ahead\? \[y/N\]")
        plan = child.before
        child.sendline("n")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 1, transcript.getvalue()
    devkit, val = len(archives.files[DEVKIT]), len(archives.files[VAL])
    assert f"into {target}:" in plan
    assert f"{DEVKIT} ({size_text(devkit)}): download, unpack" in plan  # sizes from the server (HEAD)
    assert f"{VAL} ({size_text(val)}): download, unpack" in plan
    assert re.search(re.escape(f"space needed: {size_text(2 * (devkit + val))}, ") + r"[\d.]+ [KMG]iB free in "
                     + re.escape(str(target)), plan), plan
    assert f"--keep archives needs only {size_text(devkit + val)}" in plan and "--keep extracted" in plan
    assert "stopped; nothing done" in transcript.getvalue()
    assert [r.method for r in server.requests] == ["HEAD", "HEAD"] and all(r.authorized for r in server.requests)
    assert not target.exists()


def test_keep_archives_unpacks_nothing_and_the_printed_build_reads_the_tars(
        server: ArchiveServer, archives: Archives, inputs: dict[str, Path], tmp_path: Path) -> None:
    target, output = tmp_path / "imagenet", tmp_path / "tfrecords"
    result = download(inputs, "--base_url", server.base_url, "--target_dir", str(target), "--keep", "archives",
                      "--files", "bbox,val,train", "--yes", IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=SECRET)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in target.iterdir()) == sorted([BBOX, VAL, TRAIN, ".imagenet_download"])
    for name in (BBOX, VAL, TRAIN):
        assert md5(target / name) == hashlib.md5(archives.files[name]).hexdigest()
    command = shlex.split(result.stdout.strip().splitlines()[-1])
    assert command[:2] == [sys.executable, str(REPO / "build_imagenet_data.py")]  # absolute: runs from any folder
    assert command[-2:] == ["--output_directory", "<out>"]
    assert command[2:-2] == ["--bbox_tar", str(target / BBOX), "--validation_tar", str(target / VAL),
                             "--train_tar", str(target / TRAIN)]
    run_build_cli(*command[2:-1], output, "--labels_file", inputs["synsets"], "--validation_labels_file",
                  inputs["val_labels"], "--train_shards", "2", "--validation_shards", "1", env=environment(inputs["home"]))
    from tfread import read_split

    train = {r["image/filename"]: r["image/class/synset"] for r in read_split(output, "train")}
    assert train == {name: wnid for wnid, names in archives.train_images.items() for name in names}
    assert len(read_split(output, "validation")) == len(archives.validation_labels)


def test_keep_extracted_deletes_each_archive_once_unpacked(server: ArchiveServer, archives: Archives,
                                                           inputs: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "imagenet"
    first = download(inputs, "--base_url", server.base_url, "--target_dir", str(target), "--keep", "extracted",
                     "--yes", IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=SECRET)
    assert first.returncode == 0, first.stderr
    assert_unpacked(target, archives)
    assert not list(target.glob("ILSVRC2012_*.tar*"))
    requests_before = len(server.requests)
    again = download(inputs, "--base_url", server.base_url, "--target_dir", str(target), "--keep", "extracted",
                     IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=SECRET)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr
    assert len(server.requests) == requests_before


def test_keep_extracted_never_deletes_the_from_dir_tarballs(archives: Archives, inputs: dict[str, Path],
                                                            tmp_path: Path) -> None:
    (tmp_path / DEVKIT).write_bytes(archives.files[DEVKIT])
    result = download(inputs, "--from_dir", str(tmp_path), "--files", "devkit", "--keep", "extracted",
                      "--target_dir", str(tmp_path / "t"), "--yes")
    assert_one_line_error(result, "--keep extracted", str(tmp_path), "--keep both")
    assert (tmp_path / DEVKIT).read_bytes() == archives.files[DEVKIT]
    assert not (tmp_path / "t").exists()


@pytest.fixture
def small_disk(tmp_path: Path):
    """A function giving a fresh, empty tmpfs of the size asked for ('1m', '7g'; space is only taken when
    written), unmounted after the test; the test is skipped where mounting needs a root we are not."""
    mounted = []

    def mount(size: str) -> Path:
        disk = tmp_path / f"disk{len(mounted)}"
        disk.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True,
                              check=False)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(disk)
        return disk

    yield mount
    for disk in mounted:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.parametrize("no_length, needed, keep_archives", [
    ((DEVKIT, VAL), "unknown", "about half"),
    ((DEVKIT,), "at least {both}", "at least {val}"),
])
def test_sizes_the_server_does_not_give_are_unknown_never_0_bytes(
        server: ArchiveServer, archives: Archives, inputs: dict[str, Path], tmp_path: Path,
        no_length: tuple[str, ...], needed: str, keep_archives: str) -> None:
    for name in no_length:
        server.faults[name] = NO_LENGTH
    target = tmp_path / "imagenet"
    result = download(inputs, "--base_url", server.base_url, "--target_dir", str(target), "--files", "devkit,val",
                      "--yes", IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=SECRET)
    assert result.returncode == 0, result.stderr
    val = len(archives.files[VAL])
    needed, keep_archives = (text.format(both=size_text(2 * val), val=size_text(val)) for text in (needed, keep_archives))
    lines = result.stdout.splitlines()
    assert f"  {DEVKIT} (size unknown): download, unpack" in lines
    space = [line for line in lines if line.startswith("space needed: ")]
    assert len(space) == 1 and re.fullmatch(
        re.escape(f"space needed: {needed} (the server gives no size for {', '.join(no_length)}), ")
        + r"[\d.]+ [KMG]iB" + re.escape(f" free in {target}"), space[0]), result.stdout
    assert f"  to save space: --keep archives needs only {keep_archives} (nothing unpacked" in result.stdout
    assert " 0 B" not in result.stdout
    assert [r.method for r in server.requests if r.path.endswith(DEVKIT)] == ["HEAD", "GET"]
    assert (target / "ILSVRC2012_devkit_t12" / "readme.txt").is_file()
    assert md5(target / VAL) == hashlib.md5(archives.files[VAL]).hexdigest()


@pytest.mark.parametrize("key, name", [("val", VAL), ("train", TRAIN), (None, VAL)])
def test_from_dir_tarballs_of_another_size_are_not_the_ilsvrc_archives(
        archives: Archives, inputs: dict[str, Path], tmp_path: Path, key: str | None, name: str) -> None:
    """The small look-alikes under the real names with the built-in table: named at once, not a disk shortfall
    (the published 138 GiB of the train tar) and no MD5 of the rest first; None: all four, val is the first
    with a published size."""
    tarballs, target = tmp_path / "tarballs", tmp_path / "imagenet"
    tarballs.mkdir()
    for archive_name, data in archives.files.items():
        (tarballs / archive_name).write_bytes(data)
    published = next(a for a in BUILTIN_ARCHIVES.values() if a.name == name)
    files = ["--files", key] if key else []
    result = download({**inputs, "checksums": None}, "--from_dir", str(tarballs), *files, "--target_dir", str(target),
                      "--yes")
    assert_one_line_error(result)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tarballs / name}: not the ILSVRC-2012 archive ({len(archives.files[name]):,} bytes, expected "
        f"{published.size:,} with MD5 {published.md5}); put the real {name} in {tarballs}, leave "
        f"'{published.key}' out of --files, or pass the right --checksums")
    assert "disk space" not in result.stderr and result.stdout == ""
    assert not target.exists()


def test_from_dir_tarball_with_another_md5_is_not_the_ilsvrc_archive(archives: Archives, inputs: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    """The devkit has no published size: the built-in MD5 tells."""
    (tmp_path / DEVKIT).write_bytes(archives.files[DEVKIT])
    target = tmp_path / "imagenet"
    result = download({**inputs, "checksums": None}, "--from_dir", str(tmp_path), "--files", "devkit",
                      "--target_dir", str(target), "--yes")
    assert_one_line_error(result)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / DEVKIT}: not the ILSVRC-2012 archive (MD5 is {md5(tmp_path / DEVKIT)}, expected "
        f"{BUILTIN_ARCHIVES['devkit'].md5}); put the real {DEVKIT} in {tmp_path}, leave 'devkit' out of --files, "
        "or pass the right --checksums")
    assert not target.exists()


def test_too_little_disk_is_said_before_a_user_id_or_key_is_asked(small_disk, inputs: dict[str, Path]) -> None:
    """On a terminal, no login in the environment: the published size of the val tar does not fit, and that
    is all the user sees; nothing is asked, nothing is made, the server is never asked."""
    disk = small_disk("1m")
    target = disk / "imagenet"
    child = pexpect.spawn(
        sys.executable,
        [str(SCRIPT), "--base_url", f"http://127.0.0.1:{closed_port()}/data", "--files", "val",
         "--target_dir", str(target), "--validation_labels_file", str(inputs["val_labels"])],
        cwd=str(REPO), env=environment(inputs["home"]), encoding="utf-8", timeout=60, dimensions=(40, 250))
    transcript = io.StringIO()
    child.logfile_read = transcript
    try:
        child.expect(pexpect.EOF)
    finally:
        child.close()
    shown = transcript.getvalue()
    assert child.exitstatus == 1, shown
    error = (f"error: {target}: not enough disk space to carry out this plan: needs "
             f"{size_text(2 * BUILTIN_ARCHIVES['val'].size)}, {size_text(free_bytes(disk))} free; free some space or "
             "pick another --target_dir")
    assert shown.splitlines() == [error]
    assert list(disk.iterdir()) == []


def _target_before(case: str, root: Path) -> Path:
    """The --target_dir of a failed-login run: made by the run (two folders deep), or there before, empty."""
    root.mkdir()
    if case == "made":
        return root / "new" / "imagenet"
    (root / "imagenet").mkdir()
    return root / "imagenet"


@pytest.mark.parametrize("case", ["made", "there_before"])
def test_a_login_refused_leaves_no_empty_target_folder(server: ArchiveServer, inputs: dict[str, Path], tmp_path: Path,
                                                       case: str) -> None:
    """HEAD is let through, the download answered 403: the folders the run made are gone, one there before stays."""
    server.faults[VAL] = FORBIDDEN
    target = _target_before(case, tmp_path / "root")
    result = download(inputs, "--base_url", server.base_url, "--target_dir", str(target), "--files", "val", "--yes",
                      IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=SECRET)
    assert_one_line_error(result)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {server.base_url}/{VAL}: wrong user ID or access key (HTTP 403); "
        "check --user/IMAGENET_USER and IMAGENET_ACCESS_KEY/~/.netrc")
    assert [r.method for r in server.requests] == ["HEAD", "GET"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == (
        ["root"] if case == "made" else ["root", "root/imagenet"])


def test_a_made_target_folder_with_a_finished_download_in_it_stays(server: ArchiveServer, archives: Archives,
                                                                   inputs: dict[str, Path], tmp_path: Path) -> None:
    server.faults[VAL] = FORBIDDEN
    target = tmp_path / "imagenet"
    result = download(inputs, "--base_url", server.base_url, "--target_dir", str(target), "--files", "devkit,val",
                      "--yes", IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=SECRET)
    assert_one_line_error(result, f"{VAL}: wrong user ID or access key (HTTP 403)")
    assert md5(target / DEVKIT) == hashlib.md5(archives.files[DEVKIT]).hexdigest()
    assert sorted(p.name for p in target.iterdir()) == [".imagenet_download", DEVKIT]


def test_a_wrong_key_on_the_first_download_leaves_no_target_folder(small_disk, server: ArchiveServer,
                                                                   inputs: dict[str, Path]) -> None:
    """The val tar's size is published, so no HEAD comes first: the refused GET is the first request."""
    disk = small_disk("7g")  # room for the published 6.3 GiB; a tmpfs takes memory only for what is written
    target = disk / "imagenet"
    wrong = "not-the-Key-7788"
    result = download({**inputs, "checksums": None}, "--base_url", server.base_url, "--target_dir", str(target),
                      "--files", "val", "--keep", "archives", "--yes", IMAGENET_USER=USER, IMAGENET_ACCESS_KEY=wrong)
    assert_one_line_error(result)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {server.base_url}/{VAL}: wrong user ID or access key (HTTP 401); "
        "check --user/IMAGENET_USER and IMAGENET_ACCESS_KEY/~/.netrc")
    assert wrong not in result.stdout + result.stderr
    assert [(r.method, r.authorized) for r in server.requests] == [("GET", False)]
    assert list(disk.iterdir()) == []
