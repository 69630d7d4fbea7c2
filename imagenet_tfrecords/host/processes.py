"""Idle leftover processes of the current user that look like stale builds or training runs, and ending them.

A leftover is old (started at least `min_age` seconds ago) and idle: during a short look, no process
below it or in its process group (the job a shell started) used CPU, was running or waiting on disk,
or was started. So a running build (its parent waits while its workers work, an idle worker waits for
the next shard) or a running test suite is never offered.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import psutil

from .memory import MIB

log = logging.getLogger(__name__)

BUILD_WORDS = ("tensorflow", "build_imagenet_data", "generate_tfrecord_protos")  # besides any python process
DEFAULT_MIN_AGE_SECONDS = 600.0
IDLE_LOOK_SECONDS = 1.0  # how long CPU use is watched
IDLE_CPU_SECONDS = 0.02  # CPU time (two clock ticks) a process may use in the look and still be idle
ACTIVE_STATES = frozenset({psutil.STATUS_RUNNING, psutil.STATUS_DISK_SLEEP})
TERMINATE_WAIT_SECONDS = 5.0
COMMAND_WIDTH = 70


@dataclass(frozen=True)
class Candidate:
    pid: int
    name: str
    rss: int  # bytes
    started: float  # seconds since the epoch
    command: str
    process: psutil.Process = field(compare=False, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {"pid": self.pid, "name": self.name, "rss": self.rss, "started": self.started, "command": self.command}

    def short_command(self) -> str:
        """The command line on one line (control characters and runs of spaces made one space), cut to fit."""
        command = " ".join(self.command.split())
        return command if len(command) <= COMMAND_WIDTH else command[:COMMAND_WIDTH - 3] + "..."


def looks_like_build(name: str, cmdline: list[str]) -> bool:
    """A python process, or one whose command line mentions TensorFlow or this project's builders."""
    program = os.path.basename(cmdline[0]) if cmdline else ""
    text = " ".join(cmdline).lower()
    return name.lower().startswith("python") or program.startswith("python") or any(w in text for w in BUILD_WORDS)


def _protected_pids() -> set[int]:
    """This process and every ancestor: never offered, so the tool cannot end its own shell or caller."""
    me = psutil.Process()
    return {me.pid, *(p.pid for p in me.parents())}


@dataclass(frozen=True)
class _Seen:
    parent: int
    group: int  # the process group
    cpu: float  # user + system seconds so far
    active: bool  # running or waiting on disk right now


def _look() -> dict[int, _Seen]:
    """Every process (of any user: a child may run as another) with its parent, group, CPU time and state."""
    seen = {}
    for process in psutil.process_iter(["ppid", "cpu_times", "status"]):
        info = process.info
        try:
            group = os.getpgid(process.pid)
        except OSError:  # gone meanwhile
            continue
        if info["cpu_times"] is not None:
            seen[process.pid] = _Seen(info["ppid"] or 0, group, info["cpu_times"].user + info["cpu_times"].system,
                                      info["status"] in ACTIVE_STATES)
    return seen


def _busy_pids(before: dict[int, _Seen], after: dict[int, _Seen]) -> set[int]:
    """Processes active between two looks (CPU used, running or on disk now, or started), all their
    ancestors, and every process in a group with an active one."""
    active = [pid for pid, now in after.items()
              if now.active or pid not in before or now.cpu - before[pid].cpu > IDLE_CPU_SECONDS]
    busy_groups = {after[pid].group for pid in active}
    with_ancestors: set[int] = set()
    for pid in active:
        while pid in after and pid not in with_ancestors:
            with_ancestors.add(pid)
            pid = after[pid].parent
    return with_ancestors | {pid for pid, now in after.items() if now.group in busy_groups}


def find_candidates(limit: int, match: str | None = None, min_age: float = DEFAULT_MIN_AGE_SECONDS) -> list[Candidate]:
    """The `limit` largest (by RSS) idle processes of the current user, started at least `min_age` seconds ago,
    that look like builds or contain `match`; watches CPU use for IDLE_LOOK_SECONDS when there are any."""
    uid = os.getuid()
    protected = _protected_pids()
    before = _look()
    started_by = time.time() - min_age
    found = []
    for process in psutil.process_iter(["name", "cmdline", "uids", "memory_info", "create_time", "status"]):
        info = process.info
        mine = info["uids"] is not None and info["uids"].real == uid
        if (not mine or process.pid in protected or info["status"] == psutil.STATUS_ZOMBIE
                or info["memory_info"] is None or (info["create_time"] or 0.0) > started_by):
            continue
        cmdline = info["cmdline"] or []
        command = " ".join(cmdline) or f"[{info['name']}]"
        if (match in command) if match is not None else looks_like_build(info["name"] or "", cmdline):
            found.append(Candidate(process.pid, info["name"] or "", info["memory_info"].rss, info["create_time"] or 0.0,
                                   command, process))
    if found:
        time.sleep(IDLE_LOOK_SECONDS)
        busy = _busy_pids(before, _look())
        found = [c for c in found if c.pid not in busy]
    return sorted(found, key=lambda c: c.rss, reverse=True)[:limit]


def _age(started: float) -> str:
    seconds = max(0, int(time.time() - started))
    if seconds >= 86400:
        return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def format_candidates(candidates: list[Candidate]) -> str:
    lines = [f"{'#':>3} {'pid':>8} {'rss':>10} {'age':>7}  command"]
    for number, c in enumerate(candidates, 1):
        lines.append(f"{number:>3} {c.pid:>8} {c.rss / MIB:>6.0f} MiB {_age(c.started):>7}  {c.short_command()}")
    return "\n".join(lines)


def end_processes(candidates: list[Candidate]) -> list[int]:
    """SIGTERM each (if it is still the same process of this user), SIGKILL what outlives the wait; the pids ended."""
    uid = os.getuid()
    alive = []
    for c in candidates:
        try:
            if not c.process.is_running() or c.process.uids().real != uid:  # is_running also catches a reused pid
                log.warning("pid %d is gone or no longer the listed process; left alone", c.pid)
                continue
            c.process.terminate()
            alive.append(c.process)
        except psutil.Error as exc:
            log.warning("pid %d: cannot end it (%s)", c.pid, exc)
    stubborn = _wait_gone(alive, TERMINATE_WAIT_SECONDS)
    for process in stubborn:
        log.warning("pid %d ignored SIGTERM for %.0f s; sending SIGKILL", process.pid, TERMINATE_WAIT_SECONDS)
        try:
            process.kill()
        except psutil.Error as exc:
            log.warning("pid %d: cannot kill it (%s)", process.pid, exc)
    left = _wait_gone(stubborn, TERMINATE_WAIT_SECONDS)
    return sorted(p.pid for p in alive if p not in left)


def _gone(process: psutil.Process) -> bool:
    """Exited; a zombie counts, as its memory is already freed and only its parent can reap it."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` seconds for them to exit; the ones still running."""
    deadline = time.monotonic() + timeout
    pending = [p for p in processes if not _gone(p)]
    while pending and time.monotonic() < deadline:
        time.sleep(0.1)
        pending = [p for p in pending if not _gone(p)]
    return pending
