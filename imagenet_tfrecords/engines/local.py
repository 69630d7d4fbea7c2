"""Run the shard worker on this machine: in-process for one worker, else a process pool."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Iterator
from functools import partial

from ..plan import ShardSpec
from ..shard import ShardResult, write_shard


def run_local(specs: Iterable[ShardSpec], num_workers: int, skip_bad_images: bool) -> Iterator[ShardResult]:
    """Yield each shard's result as it completes (in any order).

    Specs are pulled lazily: the pool's task pipe applies back-pressure, so only a few
    specs exist at a time. Leaving the generator early (an error) terminates the workers.
    """
    worker = partial(write_shard, skip_bad_images=skip_bad_images)
    if num_workers <= 1:
        yield from map(worker, specs)
        return
    # spawn: workers start clean (no inherited threads or locks) and import only what they use.
    with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
        yield from pool.imap_unordered(worker, specs)
