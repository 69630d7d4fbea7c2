"""Buckets in and out, against real object-store servers on 127.0.0.1: moto (S3) and gcp-storage-emulator (GCS).

Every build runs the real CLI in a subprocess that reaches the server through the environment
alone, as a user's would; what it wrote is fetched back and read with TensorFlow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from imagenet_tfrecords.output.manifest import SHARD_NAME
from imagenet_tfrecords.sample import make_sample_tarballs
from conftest import REPO, run_build_cli, sample_args, shard_digests
from dask_cluster import dask_cluster
from object_stores import ObjectStore, multipart_uploads, object_store, start_dangling_upload
from tfread import read_split

SECRET = "do-not-print-this-secret-9f3e"


def environment(server: ObjectStore, **extra: str) -> dict[str, str]:
    return {**server.environ(), **extra}


@pytest.fixture(scope="session")
def s3_server_checking_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """An S3 server that checks every request's access key, as AWS does; it knows none."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")  # moto's setting, read from its environment at start
        with object_store("s3", tmp_path_factory.mktemp("s3_checking_keys")) as server:
            patch.delenv("INITIAL_NO_AUTH_ACTION_COUNT")
            yield server


def fetch(fs: fsspec.AbstractFileSystem, url: str, target: Path) -> Path:
    """Everything under `url`, copied to `target` with the same names."""
    root = fs._strip_protocol(url)
    for path in fs.find(root):
        local = target / path[len(root) + 1:]
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(fs.cat_file(path))
    return target


def upload(fs: fsspec.AbstractFileSystem, local: Path, url: str) -> str:
    root = fs._strip_protocol(url)
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{root}/{path.relative_to(local).as_posix()}", path.read_bytes())
    return url


def assert_same_build(fetched: Path, reference: Path) -> None:
    """Shards and indexes byte for byte, and the same shard records in the manifest."""
    assert shard_digests(fetched) == shard_digests(reference) != {}
    assert shard_digests(fetched / "idx") == shard_digests(reference / "idx") != {}
    ours, theirs = (json.loads((d / "manifest.json").read_text())["shards"] for d in (fetched, reference))
    assert {k: (v["sha256"], v["size"], v["records"]) for k, v in ours.items()} == \
        {k: (v["sha256"], v["size"], v["records"]) for k, v in theirs.items()}


def test_build_into_s3_is_byte_identical_resumes_and_verifies(sample, copy_build: Path, s3_server, tmp_path: Path) -> None:
    fs, bucket = s3_server.fs, s3_server.new_bucket()
    out = f"s3://{bucket}/imagenet/tfrecords"
    env = environment(s3_server, AWS_SECRET_ACCESS_KEY=SECRET)
    first = run_build_cli(*sample_args(sample, out, "--num_threads", "2"), env=env)
    fetched = fetch(fs, out, tmp_path / "fetched")
    assert_same_build(fetched, copy_build)
    assert not (fetched / "manifest.journal").exists()  # folded into manifest.json at the end
    assert len(read_split(fetched, "train")) == 100 and len(read_split(fetched, "validation")) == 20
    again = run_build_cli(*sample_args(sample, out, "--num_threads", "2"), env=env)
    assert "4 of 4 shards already complete" in again.stderr
    verified = run_build_cli("--verify", out, env=env)
    assert "OK: every check holds" in verified.stdout
    # The verify command of its own takes the same URL (pathlib would have made it s3:/...).
    alone = subprocess.run([sys.executable, "-m", "imagenet_tfrecords.verify", out], cwd=REPO, env=env,
                           capture_output=True, text=True)
    assert alone.returncode == 0 and "OK: every check holds" in alone.stdout, alone.stderr
    everything = [first.stdout, first.stderr, again.stdout, again.stderr, verified.stdout, verified.stderr,
                  alone.stdout, alone.stderr]
    everything += [p.read_bytes().decode("latin-1") for p in fetched.rglob("*") if p.is_file()]
    assert not any(SECRET in text for text in everything)


def test_verify_finds_a_damaged_and_a_stray_object(sample, s3_server, tmp_path: Path) -> None:
    fs, bucket = s3_server.fs, s3_server.new_bucket()
    out = f"s3://{bucket}/out"
    env = environment(s3_server)
    run_build_cli(*sample_args(sample, out), env=env)
    shard = f"{bucket}/out/train-00001-of-00004"
    data = bytearray(fs.cat_file(shard))
    data[len(data) // 2] ^= 0xFF
    fs.pipe_file(shard, bytes(data))
    fs.pipe_file(f"{bucket}/out/notes.txt", b"mine")
    result = run_build_cli("--verify", out, check=False, env=env)
    assert result.returncode == 1
    assert "train-00001-of-00004" in result.stdout and "CRC mismatch" in result.stdout
    assert f"{out}/notes.txt: stray file" in result.stdout


def test_tars_and_trees_in_buckets_give_the_local_bytes(sample, copy_build: Path, s3_server, gcs_server,
                                                         tmp_path: Path) -> None:
    tars = make_sample_tarballs(sample, tmp_path / "tars")
    s3, gcs = s3_server.fs, gcs_server.fs
    s3_bucket, gcs_bucket = s3_server.new_bucket(), gcs_server.new_bucket()
    for fs, bucket in ((s3, s3_bucket), (gcs, gcs_bucket)):
        fs.pipe_file(f"{bucket}/ILSVRC2012_img_train.tar", tars.train_tar.read_bytes())
        fs.pipe_file(f"{bucket}/ILSVRC2012_img_val.tar", tars.validation_tar.read_bytes())
    shards = ["--train_shards", "4", "--validation_shards", "2", "--bounding_box_file", sample.bounding_box_file]

    # Tars in GCS, output in GCS: indexed by ranged reads, the index kept in the output.
    out = f"gs://{gcs_bucket}/out"
    env = environment(gcs_server)
    run_build_cli("--train_tar", f"gs://{gcs_bucket}/ILSVRC2012_img_train.tar", "--validation_tar",
                  f"gs://{gcs_bucket}/ILSVRC2012_img_val.tar", "--output_directory", out, *shards, env=env)
    assert_same_build(fetch(gcs, out, tmp_path / "gcs"), copy_build)
    assert len(gcs.ls(f"{gcs_bucket}/out/.tar_index")) == 2
    again = run_build_cli("--train_tar", f"gs://{gcs_bucket}/ILSVRC2012_img_train.tar", "--validation_tar",
                          f"gs://{gcs_bucket}/ILSVRC2012_img_val.tar", "--output_directory", out, *shards, env=env)
    assert "using the index kept in" in again.stderr and "4 of 4 shards already complete" in again.stderr
    assert "OK: every check holds" in run_build_cli("--verify", out, env=env).stdout

    # Tars in S3, output local.
    local = tmp_path / "from-s3-tars"
    run_build_cli("--train_tar", f"s3://{s3_bucket}/ILSVRC2012_img_train.tar", "--validation_tar",
                  f"s3://{s3_bucket}/ILSVRC2012_img_val.tar", "--output_directory", local, *shards,
                  env=environment(s3_server))
    assert_same_build(local, copy_build)

    # The extracted tree in S3 (with a file that is not an image), output local.
    upload(s3, sample.train_dir, f"s3://{s3_bucket}/train")
    upload(s3, sample.validation_dir, f"s3://{s3_bucket}/validation")
    s3.pipe_file(f"{s3_bucket}/train/{sorted(p.name for p in sample.train_dir.iterdir())[0]}/notes.txt", b"x")
    local = tmp_path / "from-s3-tree"
    result = run_build_cli("--train_directory", f"s3://{s3_bucket}/train", "--validation_directory",
                           f"s3://{s3_bucket}/validation", "--output_directory", local, *shards,
                           env=environment(s3_server))
    assert_same_build(local, copy_build)
    assert "ignored 1 entry" in result.stderr and "notes.txt" in result.stderr


def _vouched(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, int]:
    """Shard name -> size, for every shard the bucket's manifest (with its journal) vouches for."""
    shards = json.loads(fs.cat_file(f"{root}/manifest.json"))["shards"] if fs.exists(f"{root}/manifest.json") else {}
    for path in fs.find(f"{root}/manifest.journal"):
        entry = json.loads(fs.cat_file(path))
        shards[entry["name"]] = entry
    return {name: entry["size"] for name, entry in shards.items()}


def test_killed_build_leaves_only_vouched_shards_and_resumes(sample, s3_server, tmp_path: Path) -> None:
    fs, bucket = s3_server.fs, s3_server.new_bucket()
    root, out = f"{bucket}/out", f"s3://{bucket}/out"
    args = sample_args(sample, out, "--num_threads", "2", "--train_shards", "20")
    process = subprocess.Popen([sys.executable, str(REPO / "build_imagenet_data.py"), *map(str, args)], cwd=REPO,
                               env=environment(s3_server), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while not [p for p in fs.find(root) if p.rsplit("/", 1)[-1].startswith("train-")]:
        assert process.poll() is None, "the build ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    start_dangling_upload(s3_server, bucket, "out/train-00019-of-00020")  # an upload the kill cut off

    vouched = _vouched(fs, root)
    objects = {p.rsplit("/", 1)[-1]: fs.info(p)["size"] for p in fs.find(root)
               if SHARD_NAME.fullmatch(p.rsplit("/", 1)[-1])}
    assert objects, "the kill came before any shard was uploaded"
    assert all(vouched.get(name) == size for name, size in objects.items()), (objects, vouched)

    run_build_cli(*args, env=environment(s3_server))
    assert multipart_uploads(s3_server, bucket, "out/") == []
    reference = tmp_path / "local"
    run_build_cli(*sample_args(sample, reference, "--train_shards", "20"))
    assert_same_build(fetch(fs, out, tmp_path / "fetched"), reference)


def test_bucket_problems_are_one_line_naming_the_url(sample, s3_server, tmp_path: Path) -> None:
    missing = "s3://no-such-bucket-anywhere/out"
    result = run_build_cli(*sample_args(sample, missing), check=False, env=environment(s3_server), cwd=tmp_path)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert last.startswith(f"error: {missing}: ") and "bucket" in last
    assert list(tmp_path.iterdir()) == []

    result = run_build_cli("--verify", missing, check=False, env=environment(s3_server))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {missing}: ")

    result = run_build_cli("--train_tar", f"s3://{s3_server.new_bucket()}/no.tar", "--output_directory",
                           tmp_path / "out", check=False, env=environment(s3_server))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no.tar" in result.stderr.strip().splitlines()[-1]


def test_bad_credentials_are_one_line_without_the_secret(sample, s3_server_checking_keys, tmp_path: Path) -> None:
    env = environment(s3_server_checking_keys, AWS_ACCESS_KEY_ID="AKIAUNKNOWNKEY000000", AWS_SECRET_ACCESS_KEY=SECRET)
    out = "s3://some-bucket/out"
    for args in (sample_args(sample, out), ["--verify", out]):
        result = run_build_cli(*args, check=False, env=env, cwd=tmp_path)
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert last.startswith(f"error: {out}: ") and "credentials" in last, last
        assert SECRET not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []


def test_dask_workers_write_into_the_bucket_themselves(sample, copy_build: Path, s3_server, tmp_path: Path) -> None:
    fs, bucket = s3_server.fs, s3_server.new_bucket()
    out = f"s3://{bucket}/out"
    reach = ["env", *(f"{key}={value}" for key, value in s3_server.env.items())]  # the workers' own credentials
    with dask_cluster(tmp_path / "cluster", worker_prefixes=(reach, reach)) as cluster:
        run_build_cli(*sample_args(sample, out, "--scheduler", cluster.address), env=environment(s3_server),
                      timeout=300)
    assert_same_build(fetch(fs, out, tmp_path / "fetched"), copy_build)
