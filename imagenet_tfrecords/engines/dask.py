"""Run the shard worker on an existing Dask cluster (`--scheduler tcp://HOST:8786`).

Workers need the dependencies only: `dask_shipping` sends this package to them when they lack
it or have another version. Every worker must see the input and output directories at the
same paths.

Each shard's job (`write_shard` bound to its spec) is scattered to a worker as data, and the
task that runs it is `operator.call` of that data. So the scheduler never unpickles anything of
this package (it needs none of it), and what it keeps of a task (its messages to workers,
which Dask logs) is a few hundred bytes, not the spec's half a kilobyte per image.
A worker that dies mid-shard loses the job it held: the shard's task is cancelled, and it is
scattered and submitted again (up to `distributed.scheduler.allowed-failures` times); the rerun
writes a temporary of its own, and the build removes the dead one's at the end.
Leaving early (Ctrl-C, or an error elsewhere) cancels every task of the build on the cluster.
"""

from __future__ import annotations

import logging
import operator
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import CancelledError
from dataclasses import dataclass
from functools import partial
from itertools import islice
from types import ModuleType
from typing import TYPE_CHECKING

from ..errors import UserError
from ..optional import require
from ..output.shard import ShardResult, write_shard
from ..plan.shards import ShardSpec
from . import dask_probe
from .dask_shipping import RESTART_TIMEOUT_SECONDS, prepare_cluster

if TYPE_CHECKING:
    from distributed import Client, Future, as_completed

log = logging.getLogger(__name__)

TASKS_PER_THREAD = 2  # queued specs per worker thread: workers never idle, the client holds few specs
MIN_IN_FLIGHT = 4  # while the cluster has no workers yet (e.g. an adaptive cluster scaling up)


def _distributed() -> ModuleType:
    return require("distributed", "dask[distributed]", "--scheduler (on this machine and every worker)")


def _connect(address: str) -> Client:
    Client = _distributed().Client
    try:  # waits up to the Dask config's distributed.comm.timeouts.connect (30 s by default)
        return Client(address, set_as_default=False)
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"cannot connect to the Dask scheduler at {address} ({exc}); "
                        "is `dask scheduler` running there?") from None


def _capacity(client: Client) -> int:
    return max(TASKS_PER_THREAD * sum(client.nthreads().values()), MIN_IN_FLIGHT)


def _failure(client: Client, future: Future, shard: str) -> str:
    """One line: the shard, the worker it failed on (from the workers' task stories) and the error."""
    if future.status == "error":
        detail = str(future.exception())
    elif future.status == "cancelled":  # by a lost job, each time it ran
        detail = "the Dask worker holding it died each time it ran (see the workers' logs)"
    else:
        detail = f"task {future.status}"
    workers = sorted({entry[0] for entry in client.story(future.key, on_error="ignore")
                      if entry[0] != "scheduler" and entry[3] == "error"})
    where = f" on worker {', '.join(workers)}" if workers else ""
    return f"{shard} failed{where}: {' '.join(detail.split())}"


def _result(task: Future) -> ShardResult | None:
    """The task's result; None if it failed or was cancelled (also while its result was being fetched)."""
    try:
        return task.result() if task.status == "finished" else None
    except CancelledError:  # its worker died before the result was fetched, and the job with it
        return None


@dataclass
class _Shard:
    """One shard in flight: its spec, the scattered job, the task running it, and how many times its worker died."""

    spec: ShardSpec
    job: Future
    task: Future
    lost: int = 0


class _Submitter:
    """Scatters each shard's job and submits its task; cancels whatever is in flight on `cancel_all`."""

    def __init__(self, client: Client, running: as_completed, skip_bad_images: bool) -> None:
        import dask

        self.client, self.running, self.skip_bad_images = client, running, skip_bad_images
        self.allowed_losses = dask.config.get("distributed.scheduler.allowed-failures")
        self.in_flight: dict[str, _Shard] = {}  # task key -> shard

    def submit(self, spec: ShardSpec, lost: int = 0) -> None:
        job = self._scatter(spec)
        key = f"{spec.name}-{uuid.uuid4().hex}"  # unique per build; the dashboard groups by split
        task = self.client.submit(operator.call, job, key=key, pure=False)
        self.in_flight[key] = _Shard(spec, job, task, lost)
        self.running.add(task)

    def _scatter(self, spec: ShardSpec) -> Future:
        """The shard's job, held by a worker; a worker that dies while it is sent (the scheduler then
        closes the connection: CommClosedError, an OSError) is survived as a death mid-shard is."""
        for attempt in range(self.allowed_losses + 1):
            try:
                return self.client.scatter(partial(write_shard, spec, self.skip_bad_images), hash=False)
            except OSError as exc:
                log.warning("could not hand %s to a Dask worker (%s); trying again", spec.name, exc)
                time.sleep(min(2**attempt, 10) / 10)
        raise UserError(f"{spec.name}: no Dask worker would take it ({self.allowed_losses + 1} tries); "
                        "check the cluster's workers, then run the same command again")

    def finish(self, task: Future) -> None:
        self.in_flight.pop(task.key).job.release()
        task.release()

    def cancel_all(self) -> None:
        """Cancel every task in flight, and restart the workers still running one: Dask cannot stop a running task."""
        if not self.in_flight:
            return
        keys = list(self.in_flight)
        log.info("cancelling the build's %d shard(s) in flight on the Dask cluster", len(keys))
        self.client.cancel([f for shard in self.in_flight.values() for f in (shard.task, shard.job)], force=True)
        self.in_flight.clear()
        dask_probe.register()
        busy = sorted(worker for worker, held in self.client.run(partial(dask_probe.holding, keys)).items() if held)
        if busy:
            log.info("restarting Dask worker %s to stop the shards being written there", ", ".join(busy))
            self.client.restart_workers(busy, timeout=RESTART_TIMEOUT_SECONDS, raise_for_error=False)


def run_dask(specs: Iterable[ShardSpec], scheduler_address: str, skip_bad_images: bool,
             output_format: str = "tfrecord") -> Iterator[ShardResult]:
    """Yield each shard's result as it completes; raise one UserError at the end if any shard failed.

    Only a few specs per worker thread are submitted at a time, so a large plan is never
    held in memory. A failed shard is logged and the others still run to completion.
    """
    as_completed = _distributed().as_completed
    specs = iter(specs)
    failures: list[str] = []
    with _connect(scheduler_address) as client:
        prepare_cluster(client, output_format)
        log.info("Dask scheduler %s: %d workers, %d threads", scheduler_address,
                 len(client.nthreads()), sum(client.nthreads().values()))
        running = as_completed(loop=client.loop)
        submitter = _Submitter(client, running, skip_bad_images)

        def submit_more() -> None:
            for spec in islice(specs, max(_capacity(client) - running.count(), 0)):
                submitter.submit(spec)

        try:
            submit_more()
            for task in running:
                shard = submitter.in_flight[task.key]
                result = _result(task)
                # Cancelled while this loop runs: the worker that held the job died, and the job with it.
                retry = task.status == "cancelled" and shard.lost < submitter.allowed_losses
                failure = None if result is not None or retry else _failure(client, task, shard.spec.name)
                submitter.finish(task)
                if retry:
                    log.warning("%s: its Dask worker died with it; running it again", shard.spec.name)
                    submitter.submit(shard.spec, shard.lost + 1)
                elif failure is not None:
                    failures.append(failure)
                    log.error("%s", failure)
                submit_more()
                if result is not None:
                    yield result
        finally:  # Ctrl-C, or the build stopped on an error: nothing of it may run on
            submitter.cancel_all()
    if failures:
        raise UserError(f"{len(failures)} shard(s) failed on the Dask cluster; the first: {failures[0]}")
