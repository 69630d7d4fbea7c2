"""Real object-store servers on 127.0.0.1 for tests: moto in server mode (S3) and gcp-storage-emulator (GCS).

Each runs as its own process group for the session and is killed at the end. A build reaches it
through `env` alone, as a user's build reaches a store through its usual variables.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import pytest

BIN = Path(sys.executable).parent
START_TIMEOUT_SECONDS = 30.0


@dataclass
class Server:
    scheme: str  # s3 or gs
    endpoint: str
    env: dict[str, str]  # what a build's environment needs to reach the server, and nothing else
    fs: fsspec.AbstractFileSystem  # the test's own client
    buckets: list[str] = field(default_factory=list)

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        self.fs.mkdir(name)
        self.buckets.append(name)
        return name


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(command: list[str], port: int, log: Path) -> subprocess.Popen:
    """Start a server and wait until it accepts connections on 127.0.0.1:`port`."""
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                _stop(process)
                raise RuntimeError(f"{command[0]} did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# No real configuration or credentials of the machine may reach a test build.
_ISOLATED = {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def _moto(directory: Path, **server_env: str) -> tuple[subprocess.Popen, Server]:
    import s3fs

    port = free_port()
    with _environment(server_env):
        process = _serve([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port, directory / "server.log")
    endpoint = f"http://127.0.0.1:{port}"
    env = {**_ISOLATED, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "FSSPEC_S3_ENDPOINT_URL": endpoint}
    client = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=endpoint, skip_instance_cache=True)
    return process, Server("s3", endpoint, env, client)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ for a server started inside the block (moto reads its settings from it)."""
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    process, server = _moto(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def s3_server_checking_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An S3 server that checks every request's access key, as AWS does: it knows none (its `fs` neither)."""
    process, server = _moto(tmp_path_factory.mktemp("moto-auth"), INITIAL_NO_AUTH_ACTION_COUNT="0")
    try:
        yield server
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from gcsfs.core import GCSFileSystem  # the plain client: no probe for a gRPC bucket type

    port = free_port()
    process = _serve([str(BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port),
                      "--in-memory"], port, tmp_path_factory.mktemp("gcs") / "server.log")
    endpoint = f"http://127.0.0.1:{port}"
    # gcsfs asks each bucket for its type over gRPC first (60 s against an emulator): off; anonymous
    # access; the metadata server of a cloud VM never looked for.
    env = {**_ISOLATED, "STORAGE_EMULATOR_HOST": endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
           "FSSPEC_GCS_TOKEN": "anon", "GCE_METADATA_HOST": f"127.0.0.1:{free_port()}"}
    client = GCSFileSystem(endpoint_url=endpoint, token="anon", skip_instance_cache=True)
    try:
        yield Server("gs", endpoint, env, client)
    finally:
        _stop(process)
