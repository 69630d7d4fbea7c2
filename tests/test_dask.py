"""Build the sample on a real Dask cluster (scheduler + worker CLIs on 127.0.0.1) and compare with a local build."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import psutil
import pytest
import simplejpeg

pytest.importorskip("distributed")

from conftest import REPO, finished_shards, run_build_cli, sample_args, shard_digests  # noqa: E402
from dask_cluster import Cluster, dask_cluster  # noqa: E402
from test_bad_input import assert_one_line_error  # noqa: E402

from imagenet_tfrecords.storage.atomic import final_name  # noqa: E402

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


def _hiding_prefixes(*directories: Path) -> list[list[str]]:
    """Command prefixes that run a program with an empty tmpfs over each of `directories`, seen by it alone."""
    script = 'IFS=:; for d in $0; do mount -t tmpfs tmpfs "$d" || exit 1; done; exec "$@"'
    return [[*unshare, "--mount", "--propagation", "private", "sh", "-c", script, ":".join(map(str, directories))]
            for unshare in (["unshare"], ["unshare", "--user", "--map-root-user"])]


def _working_prefix(prefixes: list[list[str]], *fails: str) -> list[str]:
    """The first prefix under which the command `fails` fails (what it hides is hidden), else skip the test."""
    blind = next((prefix for prefix in prefixes if subprocess.run([*prefix, *fails], capture_output=True,
                                                                  timeout=10).returncode != 0), None)
    if blind is None:
        pytest.skip("cannot make a mount namespace here (unshare --mount) to hide files from one worker")
    return blind


def test_worker_that_cannot_see_the_input_is_reported(sample, resized_build: Path, tmp_path: Path) -> None:
    blind = _working_prefix(_hiding_prefixes(sample.root), "test", "-e", str(sample.train_dir))
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


def _stale_copy(target: Path) -> Path:
    """A copy of the package whose shard worker only raises, and a fake, older simplejpeg's metadata."""
    shutil.copytree(REPO / "imagenet_tfrecords", target / "imagenet_tfrecords",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(target / "imagenet_tfrecords" / "shard.py", "a") as shard:
        shard.write("\n\ndef write_shard(*args, **kwargs):\n    raise RuntimeError('the stale copy ran')\n")
    metadata = target / "simplejpeg-0.0.1.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_text("Metadata-Version: 2.1\nName: simplejpeg\nVersion: 0.0.1\n")
    return target


def test_package_is_sent_to_workers_without_it_or_with_another_version(sample, resized_build: Path,
                                                                       tmp_path: Path) -> None:
    output = tmp_path / "out"
    no_package = ("env", "-u", "PYTHONPATH")  # started in the cluster's directory, outside the checkout
    stale = ("env", f"PYTHONPATH={_stale_copy(tmp_path / 'stale')}")
    with dask_cluster(tmp_path / "cluster", worker_prefixes=[no_package, stale], scheduler_prefix=no_package) as cluster:
        result = run_build_cli(*sample_args(sample, output, *RESIZED, "--scheduler", cluster.address),
                               timeout=BUILD_TIMEOUT_SECONDS)
    assert_identical(output, resized_build)
    assert ("sending imagenet_tfrecords to the Dask cluster (2 of 2 workers cannot import it or have another "
            "version); the workers restart") in result.stderr
    assert ("the Dask workers have other versions than this machine, so shards may differ from a local build: "
            f"simplejpeg {metadata.version('simplejpeg')} here, 0.0.1 on the workers") in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_without_a_dependency_is_one_line_error(sample, tmp_path: Path) -> None:
    site = Path(simplejpeg.__file__).parent.parent
    hidden = [Path(simplejpeg.__file__).parent, *site.glob("simplejpeg-*.dist-info")]
    blind = _working_prefix(_hiding_prefixes(*hidden), sys.executable, "-c", "import simplejpeg; simplejpeg.decode_jpeg")
    output = tmp_path / "out"
    with dask_cluster(tmp_path / "cluster", worker_prefixes=[(), blind]) as cluster:
        result = run_build_cli(*sample_args(sample, output, "--scheduler", cluster.address),
                               check=False, timeout=BUILD_TIMEOUT_SECONDS)
        address = cluster.worker_address(1)
    assert_one_line_error(result, f"error: Dask worker {address} cannot find simplejpeg: install it on the "
                                  "workers (pip install -r requirements.txt)")
    assert shard_digests(output) == {}


def _build_tasks(address: str) -> int:
    """Tasks the scheduler and its workers still hold (queued, running, or cancelled and still running)."""
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        on_workers = client.run(lambda dask_worker: len(dask_worker.state.tasks))
        return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) + sum(on_workers.values())


def test_interrupted_build_cancels_its_tasks(sample, tmp_path: Path) -> None:
    output = tmp_path / "out"
    with dask_cluster(tmp_path / "cluster") as cluster:
        build = subprocess.Popen([sys.executable, str(REPO / "build_imagenet_data.py"),
                                  *map(str, sample_args(sample, output, *SLOW, "--scheduler", cluster.address))],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + BUILD_TIMEOUT_SECONDS
        while not any(name.startswith("train") for name in finished_shards(output)):
            assert build.poll() is None, "the build ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        build.send_signal(signal.SIGINT)
        _, stderr = build.communicate(timeout=BUILD_TIMEOUT_SECONDS)
        # Once the command has ended, nothing of the build is left on the cluster to write a shard later.
        assert _build_tasks(cluster.address) == 0
    assert build.returncode == 130, stderr
    assert "Traceback" not in stderr
    # Up to 4 in flight (2 threads x 2), fewer when the signal falls between shards ending and the next ones starting.
    assert re.search(r"cancelling the build's [1-4] shard\(s\) in flight on the Dask cluster", stderr), stderr
    assert len([name for name in shard_digests(output) if name.startswith("train")]) < 10
    assert temporaries(output) == []


def test_scheduler_keeps_no_spec(sample, tmp_path: Path) -> None:
    """The tasks the scheduler sent to workers (kept in its message log) hold no image of the spec."""
    from distributed import Client

    def sent_tasks(dask_scheduler) -> list[bytes]:  # runs on the scheduler: pickled by value
        import pickle

        return [pickle.dumps(message["run_spec"].data) for stream in dask_scheduler.stream_comms.values()
                for batch in stream.recent_message_log for message in batch
                if isinstance(message, dict) and message.get("op") == "compute-task"]

    output = tmp_path / "out"
    with dask_cluster(tmp_path / "cluster") as cluster:
        run_build_cli(*sample_args(sample, output, "--scheduler", cluster.address), timeout=BUILD_TIMEOUT_SECONDS)
        with Client(cluster.address, set_as_default=False) as client:
            tasks = client.run_on_scheduler(sent_tasks)
    assert len(tasks) == 6  # the 4 train and 2 validation shards
    assert all(str(sample.root).encode() not in task and len(task) < 1000 for task in tasks), max(map(len, tasks))
