"""Run the shard worker on this machine: in-process for one worker, else a process pool."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from operator import attrgetter

from ..output.shard import ShardResult, write_shard
from ..plan.shards import ShardSpec
from .pool import map_unordered


def run_local(specs: Iterable[ShardSpec], num_workers: int, skip_bad_images: bool) -> Iterator[ShardResult]:
    """Yield each shard's result as it completes (in any order); specs are pulled lazily.

    A worker that dies mid-shard (killed, out of memory) is replaced and the shard written again.
    """
    return map_unordered(partial(write_shard, skip_bad_images=skip_bad_images), specs, num_workers,
                         describe=attrgetter("name"))
