"""The local S3 and GCS servers of tests/object_stores.py: reached from a subprocess through `env` alone, on
127.0.0.1 only, stopped at the end; S3 multipart uploads left dangling are listed and aborted."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest
from object_stores import ObjectStore, multipart_uploads, object_store, start_dangling_upload

# What a build does with a bucket URL: fsspec picks the filesystem and its settings from the environment.
WRITE_AND_LIST = """
import json, sys, fsspec
fs, path = fsspec.core.url_to_fs(sys.argv[1])
fs.pipe_file(path + "/from-subprocess", sys.argv[2].encode())
print(json.dumps(sorted(fs.ls(path, detail=False))))
"""


@pytest.fixture(params=["s3_server", "gcs_server"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    return request.getfixturevalue(request.param)


def test_a_subprocess_with_only_env_reaches_the_server(store: ObjectStore) -> None:
    bucket = store.new_bucket()
    fs = store.fs
    fs.pipe_file(f"{bucket}/run/from-test", b"written in the test")
    payload = uuid.uuid4().hex
    result = subprocess.run([sys.executable, "-c", WRITE_AND_LIST, store.url(bucket, "run"), payload],
                            env=store.environ(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [f"{bucket}/run/from-subprocess", f"{bucket}/run/from-test"]
    assert fs.cat_file(f"{bucket}/run/from-subprocess") == payload.encode()


def test_environ_leaves_out_the_machines_cloud_settings(store: ObjectStore) -> None:
    machine = {"PATH": "/usr/bin", "AWS_PROFILE": "production", "AWS_ACCESS_KEY_ID": "AKIAREAL",
               "GOOGLE_APPLICATION_CREDENTIALS": "/home/me/key.json", "FSSPEC_S3_ANON": "true",
               "STORAGE_EMULATOR_HOST": "http://elsewhere:9000"}
    assert store.environ(machine) == {"PATH": "/usr/bin", **store.env}


def test_new_buckets_are_distinct_and_empty(store: ObjectStore) -> None:
    first, second = store.new_bucket(), store.new_bucket()
    assert first != second
    fs = store.fs
    fs.pipe_file(f"{first}/object", b"1")
    assert fs.ls(second) == []


def test_the_server_listens_on_loopback_only(store: ObjectStore) -> None:
    listening = [c.laddr for c in psutil.Process(store.process.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and {address.ip for address in listening} == {"127.0.0.1"}
    assert store.endpoint_url in {f"http://127.0.0.1:{address.port}" for address in listening}


def test_a_stopped_store_leaves_no_process(tmp_path: Path) -> None:
    with object_store("gs", tmp_path) as store:
        process = psutil.Process(store.process.pid)
        assert process.is_running()
    assert not process.is_running()


def test_a_dangling_multipart_upload_is_listed_and_aborted(s3_server: ObjectStore) -> None:  # noqa: F811
    bucket = s3_server.new_bucket()
    dangling = start_dangling_upload(s3_server, bucket, "out/train-00000-of-00004")
    elsewhere = start_dangling_upload(s3_server, bucket, "other/train-00000-of-00004")
    fs = s3_server.fs
    assert not fs.exists(f"{bucket}/out/train-00000-of-00004")  # a part uploaded is no object yet
    assert multipart_uploads(s3_server, bucket, "out/") == [("out/train-00000-of-00004", dangling)]
    fs.call_s3("abort_multipart_upload", Bucket=bucket, Key="out/train-00000-of-00004", UploadId=dangling)
    assert multipart_uploads(s3_server, bucket, "out/") == []
    assert multipart_uploads(s3_server, bucket) == [("other/train-00000-of-00004", elsewhere)]
