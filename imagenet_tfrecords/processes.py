"""Leftover processes of the current user that look like stale builds or training runs, and ending them."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import psutil

log = logging.getLogger(__name__)

MIB = 1 << 20
BUILD_WORDS = ("tensorflow", "build_imagenet_data", "generate_tfrecord_protos")  # besides any python process
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


def looks_like_build(name: str, cmdline: list[str]) -> bool:
    """A python process, or one whose command line mentions TensorFlow or this project's builders."""
    program = os.path.basename(cmdline[0]) if cmdline else ""
    text = " ".join(cmdline).lower()
    return name.lower().startswith("python") or program.startswith("python") or any(w in text for w in BUILD_WORDS)


def _protected_pids() -> set[int]:
    """This process and every ancestor: never offered, so the tool cannot end its own shell or caller."""
    me = psutil.Process()
    return {me.pid, *(p.pid for p in me.parents())}


def find_candidates(limit: int, match: str | None = None) -> list[Candidate]:
    """The `limit` largest (by RSS) processes of the current user that look like builds or contain `match`."""
    uid = os.getuid()
    protected = _protected_pids()
    found = []
    for process in psutil.process_iter(["name", "cmdline", "uids", "memory_info", "create_time", "status"]):
        info = process.info
        mine = info["uids"] is not None and info["uids"].real == uid
        if not mine or process.pid in protected or info["status"] == psutil.STATUS_ZOMBIE or info["memory_info"] is None:
            continue
        cmdline = info["cmdline"] or []
        command = " ".join(cmdline) or f"[{info['name']}]"
        if (match in command) if match is not None else looks_like_build(info["name"] or "", cmdline):
            found.append(Candidate(process.pid, info["name"] or "", info["memory_info"].rss, info["create_time"] or 0.0,
                                   command, process))
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
        command = c.command if len(c.command) <= COMMAND_WIDTH else c.command[:COMMAND_WIDTH - 3] + "..."
        lines.append(f"{number:>3} {c.pid:>8} {c.rss / MIB:>6.0f} MiB {_age(c.started):>7}  {command}")
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
