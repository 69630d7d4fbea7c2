"""Idle leftover processes of the current user that look like stale builds or training runs, and ending them.

A leftover is old (started at least `min_age` seconds ago), idle and unattended.

Idle: during a short look, no process below it or in its process group (the job a shell started) used CPU,
was running or waiting on disk, or was started. So a running build (its parent waits while its workers
work, an idle worker waits for the next shard) or a running test suite is never offered.

Unattended: no live process holds it. Among the idle ones, processes are dropped until each one left has
- a parent that is pid 1, or gone, or named as an init or subreaper in `REAPERS` (`systemd --user`, tini),
  or left itself: an orphan is reparented to one of these. A parent id of 0 is a parent outside this pid
  namespace (the runtime behind `docker exec`, which waits on it): alive;
- and a session leader that is itself, or gone, or named in `REAPERS`, or left itself. A session id of 0
  (its leader outside the namespace, or the kernel's first session) is pid 1's session: with pid 1 a
  shell or any program not in `REAPERS` (a container's `bash`, `sleep infinity`), what runs in its
  session is attended, orphan or not.
So the moto and GCS stand-ins a live pytest started (its children, each in a session of its own), a server
a live shell started, and a job of a live shell reparented to pid 1 (`(cmd &)`) are never offered, whoever
runs them (as root every process is "of yours"); a build whose terminal is gone is, with its workers. The
parent a reparented process had cannot be known: a subreaper not named in `REAPERS` counts as a live parent.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import psutil

from ..errors import printable
from .memory import MIB

log = logging.getLogger(__name__)

BUILD_WORDS = ("tensorflow", "build_imagenet_data", "generate_tfrecord_protos")  # besides any python process
DEFAULT_MIN_AGE_SECONDS = 600.0
IDLE_LOOK_SECONDS = 1.0  # how long CPU use is watched
IDLE_CPU_SECONDS = 0.02  # CPU time (two clock ticks) a process may use in the look and still be idle
ACTIVE_STATES = frozenset({psutil.STATUS_RUNNING, psutil.STATUS_DISK_SLEEP})
TERMINATE_WAIT_SECONDS = 5.0
COMMAND_WIDTH = 70  # characters of the command column; a longer one keeps its end, after a leading "…"
# Inits and subreapers that take in orphans (comm names, at most 15 characters): a parent that is one is no parent.
REAPERS = frozenset({"init", "systemd", "tini", "dumb-init", "docker-init", "catatonit", "runit", "s6-svscan",
                     "openrc-init"})
PYTHON = re.compile(r"(python|pypy)[0-9.]*[a-z]?(-dbg)?")  # python3, python3.11, python3.13t, pypy3


@dataclass(frozen=True)
class Candidate:
    pid: int
    name: str
    rss: int  # bytes
    started: float  # seconds since the epoch
    command: str  # the whole command line
    process: psutil.Process = field(compare=False, repr=False)
    argv: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"pid": self.pid, "name": self.name, "rss": self.rss, "started": self.started, "command": self.command}

    def short_command(self) -> str:
        """What the process runs (`what_runs`) on one printable line, runs of white space made one space; a
        longer one than COMMAND_WIDTH keeps its end (the script's last arguments), after a leading "…"."""
        words = what_runs(self.argv) if self.argv else [self.command]
        command = printable(" ".join(" ".join(words).split()))
        return command if len(command) <= COMMAND_WIDTH else "…" + command[len(command) - COMMAND_WIDTH + 1:]


def _program(word: str) -> str:
    """A program's file name without its folder; a rewritten process title (with spaces) as it is."""
    return word if any(c.isspace() for c in word) else os.path.basename(word.rstrip("/")) or word


def what_runs(argv: Sequence[str]) -> list[str]:
    """The words of a command line that say what the process is: for Python, the script's name and its
    arguments (`build_imagenet_data.py --x`), or `python3 -m module ...` / `python3 -c code ...`, without
    the interpreter's folder and options; for any other program, its name and arguments."""
    program = _program(argv[0]) if argv else ""
    if not PYTHON.fullmatch(program):
        return [program, *argv[1:]]
    at = 1
    while at < len(argv) and argv[at].startswith("-") and argv[at] != "-":
        word = argv[at]
        at += 1
        if word == "--":
            break
        if word.startswith("--"):
            at += word == "--check-hash-based-pycs"  # the one long option that takes a value
            continue
        for place, flag in enumerate(word[1:], 2):
            attached = word[place:]
            if flag in "cm":  # the program: -m module or -c code, the rest its arguments
                if attached:
                    return [program, f"-{flag}", attached, *argv[at:]]
                return [program, f"-{flag}", *argv[at:]]
            if flag in "XW":  # -X opt, -W arg: a value, attached or the next word
                at += not attached
                break
    if at >= len(argv):
        return [program]
    if argv[at] == "-":  # the program read from stdin
        return [program, *argv[at:]]
    return [_program(argv[at]), *argv[at + 1:]]


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
    session: int  # the session id: its leader's pid
    name: str
    cpu: float  # user + system seconds so far
    active: bool  # running or waiting on disk right now
    zombie: bool


def _look() -> dict[int, _Seen]:
    """Every process (of any user: a child may run as another) with its parent, group, session, CPU time and state."""
    seen = {}
    for process in psutil.process_iter(["ppid", "name", "cpu_times", "status"]):
        info = process.info
        try:
            group, session = os.getpgid(process.pid), os.getsid(process.pid)
        except OSError:  # gone meanwhile
            continue
        cpu = info["cpu_times"].user + info["cpu_times"].system if info["cpu_times"] is not None else 0.0
        seen[process.pid] = _Seen(info["ppid"] or 0, group, session, info["name"] or "", cpu,
                                  info["status"] in ACTIVE_STATES, info["status"] == psutil.STATUS_ZOMBIE)
    return seen


def _no_holder(pid: int, offered: set[int], seen: dict[int, _Seen]) -> bool:
    """Whether `pid`, a parent or session leader, holds no one: gone (or a zombie), an init or subreaper, or offered."""
    process = seen.get(pid)
    return process is None or process.zombie or process.name in REAPERS or pid in offered


def _unattended(pids: set[int], seen: dict[int, _Seen]) -> set[int]:
    """The largest part of `pids` that the module's rule offers: drops, until none is left to drop, each process
    whose parent or session leader is alive and not offered."""
    offered = set(pids) & seen.keys()
    while True:
        kept = set()
        for pid in offered:
            parent, session = seen[pid].parent, seen[pid].session or 1  # session 0: pid 1's
            orphan = parent == 1 or parent != 0 and _no_holder(parent, offered, seen)  # 0: outside, alive
            if orphan and (session == pid or _no_holder(session, offered, seen)):
                kept.add(pid)
        if kept == offered:
            return kept
        offered = kept


def _with_holders(pid: int, offered: set[int], seen: dict[int, _Seen]) -> set[int]:
    """`pid` and the offered processes it hangs on: its parent and session leader, theirs, and so on."""
    found, todo = set(), [pid]
    while todo:
        pid = todo.pop()
        if pid in offered and pid not in found:
            found.add(pid)
            todo += [seen[pid].parent, seen[pid].session]
    return found


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
    """The `limit` largest (by RSS) idle, unattended processes of the current user (see the module's rule),
    started at least `min_age` seconds ago, that look like builds or contain `match`; watches CPU use for
    IDLE_LOOK_SECONDS when there are any. One listed with its parent or session leader lists them too."""
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
                                   command, process, tuple(cmdline)))
    if not found:
        return []
    time.sleep(IDLE_LOOK_SECONDS)
    after = _look()
    busy = _busy_pids(before, after)
    offered = _unattended({c.pid for c in found if c.pid not in busy}, after)
    listed: set[int] = set()
    for c in sorted((c for c in found if c.pid in offered), key=lambda c: c.rss, reverse=True):
        needed = _with_holders(c.pid, offered, after) - listed
        if len(listed) + len(needed) <= limit:
            listed |= needed
    return sorted((c for c in found if c.pid in listed), key=lambda c: c.rss, reverse=True)


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
