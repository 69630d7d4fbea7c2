"""A real Dask cluster on 127.0.0.1 for tests: the `dask scheduler` and `dask worker` CLIs as subprocesses."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
DASK = Path(sys.executable).parent / "dask"
START_TIMEOUT_SECONDS = 30.0


@dataclass
class Cluster:
    address: str
    directory: Path
    workers: list[subprocess.Popen] = field(default_factory=list)

    def worker_address(self, n: int) -> str:
        """The address worker `n` first listened on, from its log."""
        log = (self.directory / f"worker-{n}.log").read_text(errors="replace")
        return re.search(r"Start worker at:\s+(\S+)", log).group(1)

    def worker_processes(self) -> list[psutil.Process]:
        """The processes that run tasks: each `dask worker` CLI is a nanny with one worker child."""
        return [child for nanny in self.workers for child in psutil.Process(nanny.pid).children(recursive=True)]


def _wait_for(condition: Callable[[], object], what: str, timeout: float = START_TIMEOUT_SECONDS) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _start(command: Sequence[str], log: Path) -> subprocess.Popen:
    # The processes import imagenet_tfrecords from this checkout unless a prefix (`env -u PYTHONPATH`) takes that
    # away; they run in the cluster's directory, outside the checkout.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "wb") as out:  # each process in its own group, so teardown reaches its children too
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent,
                                start_new_session=True)


def stop_group(process: subprocess.Popen) -> None:
    """SIGKILL the process's whole group (it was started in a session of its own) and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


@contextmanager
def dask_cluster(directory: Path, worker_prefixes: Sequence[Sequence[str]] = ((), ()),
                 scheduler_prefix: Sequence[str] = ()) -> Iterator[Cluster]:
    """A scheduler on a random port and one single-threaded worker per prefix, always torn down.

    A prefix (e.g. `unshare --mount ...`) is put before that process's command line.
    """
    directory.mkdir(parents=True, exist_ok=True)
    scheduler_file = directory / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)  # a stale one would name a dead scheduler
    processes: list[subprocess.Popen] = []
    try:
        processes.append(_start(
            [*scheduler_prefix, str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)], directory / "scheduler.log"))
        _wait_for(lambda: scheduler_file.exists() and scheduler_file.stat().st_size, "the scheduler file")
        cluster = Cluster(json.loads(scheduler_file.read_text())["address"], directory)
        for n, prefix in enumerate(worker_prefixes):
            worker = _start(
                [*prefix, str(DASK), "worker", cluster.address, "--host", "127.0.0.1", "--name", f"worker-{n}",
                 "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                 "--local-directory", str(directory / f"worker-{n}")], directory / f"worker-{n}.log")
            processes.append(worker)
            cluster.workers.append(worker)
        for n in range(len(worker_prefixes)):
            log = directory / f"worker-{n}.log"
            _wait_for(lambda: "Registered to" in log.read_text(errors="replace"), f"worker {n} to register ({log})")
        yield cluster
    finally:
        for process in reversed(processes):
            stop_group(process)
