"""A worker process killed mid-shard (as the out-of-memory killer does) never hangs a build or --verify.

The tests start the real CLI with two workers and SIGKILL the worker that is working on one
shard: the one holding that shard's file open (its hidden temporary while building, the shard
itself while verifying).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from conftest import REPO, run_build_cli, sample_args, shard_digests
from imagenet_tfrecords.output.dali_index import write_index
from imagenet_tfrecords.engines.pool import MAX_TRIES, map_unordered
from test_bad_input import assert_one_line_error
from tfread import read_split

HANG_GUARD_SECONDS = 120  # far beyond a run of these sizes; a hung run fails instead of stalling the suite
VICTIM = "train-00001-of-00004"
COPIES = 20  # verify shards made of a build's shard repeated: long enough to be caught mid-shard


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    kills: int


def _holds_open(process: psutil.Process, wanted) -> bool:
    try:
        return any(wanted(Path(f.path).name) for f in process.open_files())
    except psutil.Error:  # it ended meanwhile
        return False


def run_killing_workers(args: list, wanted, kills: int, tmp_path: Path) -> Outcome:
    """Run the CLI; SIGKILL each worker seen holding a file `wanted(name)` picks, up to `kills` times."""
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen([sys.executable, str(REPO / "build_imagenet_data.py"), *map(str, args)], cwd=REPO,
                                   stdout=stdout, stderr=stderr, text=True, start_new_session=True)
    killed: set[int] = set()
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    try:
        parent = psutil.Process(process.pid)
        while process.poll() is None:
            assert time.monotonic() < deadline, "the run hangs after its worker was killed"
            for child in parent.children(recursive=True) if len(killed) < kills else ():
                if child.pid not in killed and _holds_open(child, wanted):
                    child.kill()
                    killed.add(child.pid)
            time.sleep(0.002)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return Outcome(process.returncode, out.read_text(), err.read_text(), len(killed))


def writing(shard: str):
    """A worker writing `shard`: it holds the shard's hidden temporary file open."""
    return lambda name: name.startswith(f".{shard}") and name.endswith(".tmp")


def died_line(shard: str, try_number: int) -> str:
    return (f"died (killed by SIGKILL, maybe out of memory) while working on {shard}; "
            f"running it again (try {try_number} of {MAX_TRIES})")


def test_a_worker_killed_mid_shard_is_replaced_and_the_build_is_unchanged(sample, resized_build: Path,
                                                                          tmp_path: Path) -> None:
    output = tmp_path / "out"
    args = sample_args(sample, output, "--resize_images", "--num_threads", "2")
    outcome = run_killing_workers(args, writing(VICTIM), 1, tmp_path)
    assert outcome.kills == 1
    assert outcome.returncode == 0, outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert outcome.stderr.count(died_line(VICTIM, 2)) == 1, outcome.stderr
    assert shard_digests(output) == shard_digests(resized_build)
    assert shard_digests(output / "idx") == shard_digests(resized_build / "idx")
    for split in ("train", "validation"):
        assert read_split(output, split) == read_split(resized_build, split)
    assert run_build_cli("--verify", output, check=False).returncode == 0


def test_a_shard_that_kills_its_worker_every_time_stops_the_build_in_one_line(sample, resized_build: Path,
                                                                              tmp_path: Path) -> None:
    output = tmp_path / "out"
    args = sample_args(sample, output, "--resize_images", "--num_threads", "2")
    outcome = run_killing_workers(args, writing(VICTIM), MAX_TRIES, tmp_path)
    assert outcome.kills == MAX_TRIES
    assert_one_line_error(outcome, f"error: {VICTIM}: its worker process died {MAX_TRIES} times (killed by SIGKILL, "
                                   "maybe out of memory); free some memory or use fewer --num_threads")
    assert all(died_line(VICTIM, n) in outcome.stderr for n in range(2, MAX_TRIES + 1)), outcome.stderr
    assert VICTIM not in json.loads((output / "manifest.json").read_text())["shards"]
    assert not list(output.glob(".*.tmp")) and not list((output / "idx").glob(".*.tmp"))
    run_build_cli(*args)  # nothing lost: the same command resumes and finishes the build
    assert shard_digests(output) == shard_digests(resized_build)


@pytest.fixture
def long_shards(resized_build: Path, tmp_path: Path) -> Path:
    """Shards made elsewhere (no manifest.json), each a build's shard repeated COPIES times."""
    directory = tmp_path / "long"
    (directory / "idx").mkdir(parents=True)
    for shard in sorted(resized_build.glob("*-of-*")):
        (directory / shard.name).write_bytes(shard.read_bytes() * COPIES)
        write_index(directory / shard.name, directory / "idx")
    return directory


def test_a_verify_worker_killed_mid_shard_is_replaced_and_the_report_is_unchanged(long_shards: Path,
                                                                                   tmp_path: Path) -> None:
    args = ["--verify", long_shards, "--deep", "--json", "--no_manifest", "--num_threads", "2"]
    uninterrupted = run_build_cli(*args)
    outcome = run_killing_workers(args, lambda name: name == VICTIM, 1, tmp_path)
    assert outcome.kills == 1
    assert outcome.returncode == 0, outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert died_line(VICTIM, 2) in outcome.stderr
    report = json.loads(outcome.stdout)
    assert report["ok"] and report["shards"][VICTIM]["records"] == 25 * COPIES
    assert report == json.loads(uninterrupted.stdout)


def test_the_pool_pulls_items_lazily_and_stops_its_workers_when_left_early() -> None:
    pulled = []

    def items():
        for number in range(-1000, 0):
            pulled.append(number)
            yield number

    results = map_unordered(abs, items(), 2)
    assert next(results) > 0
    assert len(pulled) <= 3  # one item per worker, and the one a finished worker took next
    workers = [p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) == 2
    results.close()
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
