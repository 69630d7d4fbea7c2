"""Run the shard worker on an existing Dask cluster (`--scheduler tcp://HOST:8786`).

The scheduler and every worker must import this package (same checkout or virtualenv on
each node, or `pip install .[dask]`): the scheduler unpickles the specs too. Every worker
must see the input and output directories at the same paths.
A worker that dies mid-shard leaves only a temporary file; the scheduler reruns its task
elsewhere (up to `distributed.scheduler.allowed-failures` times), the rerun writes a temporary
of its own, and the build removes the dead one's at the end.
"""

from __future__ import annotations

import importlib.util
import logging
import uuid
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING

from ..errors import UserError
from ..plan import ShardSpec
from ..shard import ShardResult, write_shard

if TYPE_CHECKING:
    from distributed import Client, Future

log = logging.getLogger(__name__)

TASKS_PER_THREAD = 2  # queued specs per worker thread: workers never idle, the client holds few specs
MIN_IN_FLIGHT = 4  # while the cluster has no workers yet (e.g. an adaptive cluster scaling up)


def _connect(address: str) -> Client:
    try:
        from distributed import Client
    except ImportError:
        raise UserError("--scheduler needs Dask on this machine and every worker: pip install '.[dask]'") from None
    try:  # waits up to the Dask config's distributed.comm.timeouts.connect (30 s by default)
        return Client(address, set_as_default=False)
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"cannot connect to the Dask scheduler at {address} ({exc}); "
                        "is `dask scheduler` running there?") from None


def _check_environment(client: Client, address: str) -> None:
    """Fail fast: a worker that cannot import this package dies on its first task, and the build would wait."""
    package = __name__.split(".")[0]
    found = {f"worker {worker}": spec for worker, spec in client.run(importlib.util.find_spec, package).items()}
    found[f"scheduler {address}"] = client.run_on_scheduler(importlib.util.find_spec, package)
    missing = sorted(name for name, spec in found.items() if spec is None)
    if missing:
        raise UserError(f"Dask {', '.join(missing)} cannot import {package}: install it on the scheduler and every "
                        "worker (pip install '.[dask]', or the same checkout on PYTHONPATH)")


def _capacity(client: Client) -> int:
    return max(TASKS_PER_THREAD * sum(client.nthreads().values()), MIN_IN_FLIGHT)


def _failure(client: Client, future: Future, shard: str) -> str:
    """One line: the shard, the worker it failed on (from the workers' task stories) and the error."""
    detail = str(future.exception()) if future.status == "error" else f"task {future.status}"
    workers = sorted({entry[0] for entry in client.story(future.key, on_error="ignore")
                      if entry[0] != "scheduler" and entry[3] == "error"})
    where = f" on worker {', '.join(workers)}" if workers else ""
    return f"{shard} failed{where}: {' '.join(detail.split())}"


def run_dask(specs: Iterable[ShardSpec], scheduler_address: str, skip_bad_images: bool) -> Iterator[ShardResult]:
    """Yield each shard's result as it completes; raise one UserError at the end if any shard failed.

    Only a few specs per worker thread are submitted at a time, so a large plan is never
    held in memory. A failed shard is logged and the others still run to completion.
    """
    from distributed import as_completed

    specs = iter(specs)
    failures: list[str] = []
    with _connect(scheduler_address) as client:
        _check_environment(client, scheduler_address)
        log.info("Dask scheduler %s: %d workers, %d threads", scheduler_address,
                 len(client.nthreads()), sum(client.nthreads().values()))
        shards: dict[str, str] = {}  # task key -> shard name
        running = as_completed(loop=client.loop)

        def submit_more() -> None:
            for spec in islice(specs, max(_capacity(client) - running.count(), 0)):
                key = f"{spec.name}-{uuid.uuid4().hex}"  # unique per build; the dashboard groups by split
                shards[key] = spec.name
                running.add(client.submit(write_shard, spec, skip_bad_images, key=key, pure=False))

        submit_more()
        for future in running:
            shard = shards.pop(future.key)
            result = future.result() if future.status == "finished" else None
            if result is None:
                failures.append(_failure(client, future, shard))
                log.error("%s", failures[-1])
            future.release()
            submit_more()
            if result is not None:
                yield result
    if failures:
        raise UserError(f"{len(failures)} shard(s) failed on the Dask cluster; the first: {failures[0]}")
