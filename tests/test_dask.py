"""Build the sample on a real Dask cluster (scheduler + worker CLIs on 127.0.0.1) and compare with a local build."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

pytest.importorskip("distributed")

from conftest import run_build_cli, sample_args, shard_digests  # noqa: E402
from imagenet_tfrecords.atomic import final_name  # noqa: E402
from dask_cluster import Cluster, dask_cluster  # noqa: E402

BUILD_TIMEOUT_SECONDS = 120
RESIZED = ("--resize_images", "--num_threads", "2")
# Upscaling to 1500x1500 makes a shard take about a second, long enough to kill a worker in it.
SLOW = ("--resize_images", "--new_height", "1500", "--new_width", "1500", "--train_shards", "10", "--num_threads", "2")


def temporaries(output: Path) -> list[str]:
    return sorted(p.name for p in [*output.glob(".*.tmp"), *output.glob("idx/.*.tmp")])


def assert_identical(output: Path, reference: Path) -> None:
    assert shard_digests(output) == shard_digests(reference)
    assert shard_digests(output / "idx") == shard_digests(reference / "idx")
    assert len(shard_digests(output)) == len(shard_digests(output / "idx")) > 0
    assert temporaries(output) == []


def test_cluster_build_is_byte_identical_to_local(sample, resized_build: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    with dask_cluster(tmp_path / "cluster") as cluster:
        result = run_build_cli(*sample_args(sample, output, *RESIZED, "--scheduler", cluster.address),
                               timeout=BUILD_TIMEOUT_SECONDS)
    assert_identical(output, resized_build)
    assert re.search(r"^train\s+100\s+100\s+4\s+0\s", result.stdout, re.MULTILINE), result.stdout


def _writing_worker(cluster: Cluster) -> tuple[int, str] | None:
    """A worker process with a shard's temporary file open, and that file's name."""
    for process in cluster.worker_processes():
        try:
            for handle in process.open_files():
                name = Path(handle.path).name
                if name.startswith(".train-") and name.endswith(".tmp"):
                    return process.pid, name
        except psutil.Error:  # it just ended or is restarting
            continue
    return None


def test_worker_killed_mid_shard_is_retried(sample, tmp_path: Path) -> None:
    reference, output = tmp_path / "reference", tmp_path / "out"
    run_build_cli(*sample_args(sample, reference, *SLOW), timeout=BUILD_TIMEOUT_SECONDS)
    with dask_cluster(tmp_path / "cluster") as cluster, ThreadPoolExecutor(1) as pool:
        build = pool.submit(run_build_cli, *sample_args(sample, output, *SLOW, "--scheduler", cluster.address),
                            timeout=BUILD_TIMEOUT_SECONDS)
        deadline = time.monotonic() + BUILD_TIMEOUT_SECONDS
        while (writer := _writing_worker(cluster)) is None:
            assert not build.done(), "the build ended before a worker could be killed mid-shard"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        pid, temporary = writer
        os.kill(pid, signal.SIGKILL)
        result = build.result(timeout=BUILD_TIMEOUT_SECONDS + 10)
        assert pid not in [p.pid for p in cluster.worker_processes()]
    assert_identical(output, reference)
    assert (output / final_name(temporary)).exists()
    assert re.search(r"^train\s+100\s+100\s+10\s+0\s", result.stdout, re.MULTILINE), result.stdout


def _hiding_prefixes(directory: Path) -> list[list[str]]:
    """Command prefixes that run a program with an empty tmpfs over `directory`, seen by it alone."""
    script = 'mount -t tmpfs tmpfs "$0" && exec "$@"'
    return [[*unshare, "--mount", "--propagation", "private", "sh", "-c", script, str(directory)]
            for unshare in (["unshare"], ["unshare", "--user", "--map-root-user"])]


def test_worker_that_cannot_see_the_input_is_reported(sample, resized_build: Path, tmp_path: Path) -> None:
    blind = next((prefix for prefix in _hiding_prefixes(sample.root)
                  if subprocess.run([*prefix, "test", "!", "-e", str(sample.train_dir)], timeout=10).returncode == 0),
                 None)
    if blind is None:
        pytest.skip("cannot make a mount namespace here (unshare --mount) to hide the input from one worker")
    output = tmp_path / "out"
    train_only = ["--train_directory", sample.train_dir, "--bounding_box_file", sample.bounding_box_file,
                  "--output_directory", output, "--train_shards", "4", *RESIZED]  # a failed split ends the build
    with dask_cluster(tmp_path / "cluster", worker_prefixes=[blind, ()]) as cluster:
        result = run_build_cli(*train_only, "--scheduler", cluster.address,
                               check=False, timeout=BUILD_TIMEOUT_SECONDS)
        blind_address = cluster.worker_address(0)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    match = re.fullmatch(rf"error: (\d+) shard\(s\) failed on the Dask cluster; the first: "
                         rf"(train-\d{{5}}-of-\d{{5}}) failed on worker {re.escape(blind_address)}: "
                         rf"{re.escape(str(sample.root))}/\S+: cannot read the file \(No such file or directory\).*",
                         error)
    assert match, result.stderr
    failed = set(re.findall(rf"(train-\d{{5}}-of-\d{{5}}) failed on worker {re.escape(blind_address)}", result.stderr))
    assert match.group(2) in failed and len(failed) == int(match.group(1))
    # The other worker's shards were all written, correct, and recorded in the manifest.
    written = shard_digests(output)
    expected = {name: digest for name, digest in shard_digests(resized_build).items() if name.startswith("train-")}
    assert set(written) == set(expected) - failed and written
    assert set(json.loads((output / "manifest.json").read_text())["shards"]) == set(written)
    assert all(written[name] == expected[name] for name in written)
    assert temporaries(output) == []


def test_unreachable_scheduler_is_one_line_error(sample, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    result = run_build_cli(*sample_args(sample, tmp_path / "out", "--scheduler", address),
                           check=False, env=env, timeout=BUILD_TIMEOUT_SECONDS)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: cannot connect to the Dask scheduler at {address} ("), result.stderr
    assert shard_digests(tmp_path / "out") == {}


@pytest.mark.parametrize("process", ["worker", "scheduler"])
def test_cluster_without_the_package_is_reported(process: str, sample, tmp_path: Path) -> None:
    output = tmp_path / "out"
    no_package = ("env", "-u", "PYTHONPATH")
    with dask_cluster(tmp_path / "cluster", worker_prefixes=[no_package if process == "worker" else (), ()],
                      scheduler_prefix=no_package if process == "scheduler" else ()) as cluster:
        result = run_build_cli(*sample_args(sample, output, "--scheduler", cluster.address),
                               check=False, timeout=BUILD_TIMEOUT_SECONDS)
        address = cluster.worker_address(0) if process == "worker" else cluster.address
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: Dask {process} {address} cannot import imagenet_tfrecords: install it on the scheduler and "
        "every worker (pip install '.[dask]', or the same checkout on PYTHONPATH)")
    assert shard_digests(output) == {}
