"""Mapping a function over items in worker processes on this machine, and how many CPUs there are."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity), not all the machine has."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def map_unordered(function: Callable[[Item], Result], items: Iterable[Item], num_workers: int) -> Iterator[Result]:
    """Yield function(item) for each item as it completes, in any order: in this process for one
    worker, else in a spawn pool.

    Items are pulled lazily: the pool's task pipe applies back-pressure, so only a few exist at a
    time. Leaving the generator early (an error) terminates the workers.
    """
    if num_workers <= 1:
        yield from map(function, items)
        return
    # spawn: workers start clean (no inherited threads or locks) and import only what they use.
    with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
        yield from pool.imap_unordered(function, items)
