"""Local stand-ins for buckets in tests: moto's S3 server and gcp-storage-emulator, each its own process on 127.0.0.1.

The session fixtures `s3_server` and `gcs_server` yield an ObjectStore. Its `env` is all a subprocess (a real build)
needs to reach the server through `fsspec.core.url_to_fs("s3://..." or "gs://...")`; `environ()` is the whole
environment for one, the machine's own cloud settings left out. Run as a script (`python tests/object_stores.py s3`
or `gs`), this module is the server: it prints its port and serves until its stdin closes.
"""

from __future__ import annotations

import functools
import itertools
import os
import select
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import pytest
from dask_cluster import stop_group

# gcsfs picks its GCSFileSystem class when first imported. The default one asks each bucket for its storage layout
# over gRPC before it reads or writes, and waits 60 s per call for an emulator that cannot answer: set before gcsfs is.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

START_TIMEOUT_SECONDS = 30.0
NOWHERE = "/nonexistent/object-stores"  # config paths that do not exist, so the machine's own files stay out
# The machine's settings that could point a client at a real cloud: left out of a subprocess's environment.
CLOUD_SETTINGS = ("AWS_", "BOTO_", "FSSPEC_", "GOOGLE_", "GCE_", "GCSFS_", "CLOUDSDK_", "STORAGE_EMULATOR_HOST")
FAKE_KEY, FAKE_SECRET = "testing", "testing"


@dataclass
class ObjectStore:
    protocol: str  # "s3" or "gs"
    endpoint_url: str
    env: dict[str, str]  # what a subprocess needs to reach this server, and no real store
    storage_options: dict[str, str]  # the same for fsspec in this process
    process: subprocess.Popen
    _serial: Iterator[int] = field(default_factory=itertools.count, repr=False)

    def url(self, bucket: str, key: str = "") -> str:
        return f"{self.protocol}://{bucket}/{key}" if key else f"{self.protocol}://{bucket}"

    @functools.cached_property
    def fs(self) -> fsspec.AbstractFileSystem:
        """This process's client. Without a listings cache, it sees what other processes wrote."""
        return fsspec.filesystem(self.protocol, skip_instance_cache=True, use_listings_cache=False,
                                 **self.storage_options)

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A subprocess's environment: `base` (os.environ by default) without its cloud settings, plus `env`."""
        base = os.environ if base is None else base
        return {**{k: v for k, v in base.items() if not k.startswith(CLOUD_SETTINGS)}, **self.env}

    def new_bucket(self) -> str:
        """The name of a new, empty bucket."""
        name = f"test-{next(self._serial)}-{uuid.uuid4().hex[:12]}"
        self.fs.mkdir(name)
        return name


def _s3(endpoint_url: str, process: subprocess.Popen) -> ObjectStore:
    env = {
        "AWS_ACCESS_KEY_ID": FAKE_KEY, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET, "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": f"{NOWHERE}/aws-config", "AWS_SHARED_CREDENTIALS_FILE": f"{NOWHERE}/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
        "FSSPEC_S3_ENDPOINT_URL": endpoint_url,  # s3fs's endpoint_url=, through fsspec's configuration
        "AWS_ENDPOINT_URL_S3": endpoint_url,  # botocore's own: boto3 and the aws CLI land here too
        "FSSPEC_CONFIG_DIR": NOWHERE,
    }
    options = {"endpoint_url": endpoint_url, "key": FAKE_KEY, "secret": FAKE_SECRET}
    return ObjectStore("s3", endpoint_url, env, options, process)


def _gcs(endpoint_url: str, process: subprocess.Popen) -> ObjectStore:
    import gcsfs

    if gcsfs.GCSFileSystem is not gcsfs.core.GCSFileSystem:
        raise RuntimeError("gcsfs was imported before tests/object_stores.py, with its gRPC bucket probe on: "
                           "import this module first (conftest) or set GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false")
    env = {
        "STORAGE_EMULATOR_HOST": endpoint_url,
        "FSSPEC_GS_TOKEN": "anon",  # no credentials looked for (nor the metadata server of a cloud VM)
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "FSSPEC_CONFIG_DIR": NOWHERE,
    }
    return ObjectStore("gs", endpoint_url, env, {"endpoint_url": endpoint_url, "token": "anon"}, process)


def _start(protocol: str, log: Path) -> tuple[subprocess.Popen, int]:
    """This module as a server in its own process group; its port, once it listens."""
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, __file__, protocol], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=output, start_new_session=True)
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_SECONDS)
    line = process.stdout.readline().strip() if ready else b""
    if not line.isdigit():
        _stop(process)
        raise RuntimeError(f"the {protocol} server did not start within {START_TIMEOUT_SECONDS:.0f} s; "
                           f"its log {log}:\n{log.read_text(errors='replace')[-2000:]}")
    return process, int(line)


def _stop(process: subprocess.Popen) -> None:
    stop_group(process)
    process.stdin.close()
    process.stdout.close()


@contextmanager
def object_store(protocol: str, directory: Path) -> Iterator[ObjectStore]:
    """A server for `protocol` ("s3" or "gs") on a free port of 127.0.0.1, its log in `directory`; always stopped."""
    process, port = _start(protocol, directory / f"{protocol}-server.log")
    try:
        yield (_s3 if protocol == "s3" else _gcs)(f"http://127.0.0.1:{port}", process)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    with object_store("s3", tmp_path_factory.mktemp("s3_server")) as store:
        yield store


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    with object_store("gs", tmp_path_factory.mktemp("gcs_server")) as store:
        yield store


def start_dangling_upload(store: ObjectStore, bucket: str, key: str) -> str:
    """An S3 multipart upload with one part and never completed, as a killed build leaves one; its upload id."""
    upload_id = store.fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)["UploadId"]
    store.fs.call_s3("upload_part", Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"\0" * 1024)
    return upload_id


def multipart_uploads(store: ObjectStore, bucket: str, prefix: str = "") -> list[tuple[str, str]]:
    """(key, upload id) of the S3 multipart uploads in progress under `prefix`, every page of them."""
    uploads, marker = [], {}
    while True:
        page = store.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix, **marker)
        uploads += [(upload["Key"], upload["UploadId"]) for upload in page.get("Uploads", [])]
        if not page.get("IsTruncated"):
            return uploads
        marker = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}


def _serve(protocol: str) -> None:
    """Be the server: print the port it listens on, then serve until stdin closes (the tests ended or died)."""
    if protocol == "s3":
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        port = server.get_host_and_port()[1]
    else:
        import http.server

        # The emulator serves one connection at a time from a backlog of 5: parallel requests beyond that are
        # dropped and retried, and 100 concurrent small reads take about 110 s instead of 0.1 s.
        http.server.HTTPServer.request_queue_size = 128
        from gcp_storage_emulator.server import create_server

        server = create_server("127.0.0.1", 0, in_memory=True)
        server.start()
        port = server._api._httpd.server_address[1]  # the port it bound; no public accessor
    print(port, flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    _serve(sys.argv[1])
