"""Mapping a function over items in worker processes on this machine, and how many CPUs there are.

A hand-made pool rather than `multiprocessing.Pool` or `concurrent.futures`: `Pool` waits
forever for the result of a worker the kernel killed (out of memory, SIGKILL), and
`ProcessPoolExecutor` fails every task in flight without saying whose worker died. Here each
worker holds one item at a time, so a dead worker names the item it lost, and that item alone
is run again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext
from typing import Generic, TypeVar

from ..errors import UserError

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_TRIES = 3  # an item whose worker dies this often (say out of memory on one huge image) stops the run
STOP_SECONDS = 5  # how long a worker told to stop may take before it is killed
_NO_MORE = object()


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity), not all the machine has."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _serve(function: Callable, connection: Connection) -> None:
    """A worker: receive an item, send back (True, result, None) or (False, exception, its traceback); repeat.

    Ctrl-C never reaches it: it starts with SIGINT blocked (see `_spawn`); the parent stops it.
    """
    while True:
        try:
            item = connection.recv()
        except EOFError:  # the parent is done with us
            return
        try:
            reply = (True, function(item), None)
        except Exception as exc:
            reply = (False, exc, traceback.format_exc())
        try:
            connection.send(reply)
        except Exception:  # a result or exception that does not pickle: send why, rather than die
            connection.send((False, RuntimeError(traceback.format_exc()), ""))


@dataclass
class _Task(Generic[Item]):
    item: Item
    tries: int = 0


@contextmanager
def _sigint_held_back() -> Iterator[None]:
    """A Ctrl-C during the block arrives (as KeyboardInterrupt) when it ends, not lost, not sooner.

    SIGINT is blocked in this thread, which processes started here inherit. That alone does not
    hold it back here: another thread of this process (a native library's) may take the signal,
    and Python then raises KeyboardInterrupt in the main thread all the same. So in the main
    thread the Python handler is replaced for the block by one that only notes the signal.
    """
    noted = []
    in_main_thread = threading.current_thread() is threading.main_thread()  # only it sets handlers
    handler = signal.signal(signal.SIGINT, lambda *_: noted.append(True)) if in_main_thread else None
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if in_main_thread:
            signal.signal(signal.SIGINT, handler)
            if noted:
                signal.raise_signal(signal.SIGINT)  # to the handler there was before


class _Worker:
    """One spawned process and its pipe, and the task it holds (None while idle)."""

    def __init__(self, context: SpawnContext, function: Callable) -> None:
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(function, child), daemon=True)
        self.process.start()
        child.close()
        self.task: _Task | None = None

    def give(self, task: _Task) -> None:
        self.task = task
        try:
            self.connection.send(task.item)
        except OSError:  # it died while idle; its sentinel tells the loop
            pass

    def reply(self) -> tuple[bool, object, str | None] | None:
        """Its reply once it has one; None when it died instead. Call only when it is ready."""
        if self.connection.poll():
            try:
                return self.connection.recv()
            except (EOFError, OSError):
                pass
        self.stop()
        return None

    def stop(self) -> None:
        self.connection.close()
        self.process.terminate()
        self.process.join(STOP_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def _spawn(workers: list[_Worker], slot: int, context: SpawnContext, function: Callable) -> None:
    """Start a worker into workers[slot] (slot == len(workers): one more), deaf to Ctrl-C.

    Ctrl-C reaches the whole process group: a worker still importing would print "Process
    SpawnProcess-1:" and a traceback. A process inherits its parent's signal mask through fork and
    exec, so SIGINT blocked here stays blocked in the worker for its whole life (multiprocessing
    starts its resource tracker so too). The parent's own Ctrl-C waits until the worker is stored,
    so that `map_unordered` stops it. The resource tracker is started first: when starting a
    process has to start it, it unblocks SIGINT before the worker is started.
    """
    resource_tracker.ensure_running()
    with _sigint_held_back():
        workers[slot:slot + 1] = [_Worker(context, function)]


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is None or exitcode >= 0:
        return f"exited with status {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:  # a real-time signal has no name
        name = f"signal {-exitcode}"
    return f"killed by {name}" + (", maybe out of memory" if -exitcode == signal.SIGKILL else "")


def map_unordered(function: Callable[[Item], Result], items: Iterable[Item], num_workers: int,
                  describe: Callable[[Item], str] = str) -> Iterator[Result]:
    """Yield function(item) for each item as it completes, in any order: in this process for one
    worker, else in spawn worker processes.

    Items are pulled lazily, one per idle worker. An exception from `function` is raised here.
    A worker that dies (killed, out of memory) is replaced and its item run again, up to
    MAX_TRIES in all; then a UserError names the item (`describe(item)`). Leaving the generator
    early (an error, Ctrl-C) stops the workers.
    """
    if num_workers <= 1:
        yield from map(function, items)
        return
    # spawn: workers start clean (no inherited threads or locks) and import only what they use.
    context = multiprocessing.get_context("spawn")
    pending, lost = iter(items), deque()
    workers: list[_Worker] = []
    try:
        for slot in range(num_workers):
            _spawn(workers, slot, context, function)
        while True:
            for worker in workers:
                if worker.task is None:
                    task = lost.popleft() if lost else _Task(next(pending, _NO_MORE))
                    if task.item is _NO_MORE:
                        break
                    worker.give(task)
            busy = [worker for worker in workers if worker.task is not None]
            if not busy:
                return
            ready = set(wait([w.connection for w in busy] + [w.process.sentinel for w in busy]))
            for slot, worker in enumerate(workers):
                if worker.task is None or not {worker.connection, worker.process.sentinel} & ready:
                    continue
                task, worker.task = worker.task, None
                reply = worker.reply()
                if reply is None:
                    lost.append(_retry(task, worker.process, describe))
                    _spawn(workers, slot, context, function)
                    continue
                ok, value, remote_traceback = reply
                if not ok:
                    if remote_traceback:  # shown only for a bug: a UserError prints as its one line
                        value.add_note(f"in the worker process:\n{remote_traceback}")
                    raise value
                yield value
    finally:
        for worker in workers:
            worker.stop()


def _retry(task: _Task, process: multiprocessing.Process, describe: Callable) -> _Task:
    """The task again after its worker died, or a UserError once it has died MAX_TRIES times."""
    task.tries += 1
    how = _how_it_ended(process.exitcode)
    if task.tries >= MAX_TRIES:
        raise UserError(f"{describe(task.item)}: its worker process died {task.tries} times ({how}); "
                        "free some memory or use fewer --num_threads, then run the same command again")
    log.warning("worker process %d died (%s) while working on %s; running it again (try %d of %d)",
                process.pid, how, describe(task.item), task.tries + 1, MAX_TRIES)
    return task
