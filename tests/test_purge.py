"""purge_mem_caches.py through a real terminal: a stand-in /proc/sys/vm, a fake sudo, real psutil and processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pexpect
import psutil
import pytest

from imagenet_tfrecords.host.processes import COMMAND_WIDTH, REAPERS

ROOT = Path(__file__).resolve().parents[1]
PURGE = str(ROOT / "purge_mem_caches.py")
PASSWORD = "correct horse battery"
FAKE_SUDO = """#!/bin/bash
# Stands in for sudo: asks for the password on the terminal, without echo, as sudo does.
prompt="Password: "
while [ $# -gt 0 ]; do
  case "$1" in -p) prompt="$2"; shift 2;; --) shift; break;; -*) shift;; *) break;; esac
done
for try in 1 2 3; do
  printf '%s' "$prompt" > /dev/tty
  IFS= read -rs password < /dev/tty
  echo > /dev/tty
  if [ "$password" = {password} ]; then
    {on_success}
  fi
  [ $try -lt 3 ] && echo "Sorry, try again." > /dev/tty
done
echo "sudo: 3 incorrect password attempts" > /dev/tty
exit 1
"""
ALLOWED = 'exec "$@"'
DENIED = 'echo "$(id -un) is not in the sudoers file.  This incident will be reported." > /dev/tty; exit 1'


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A directory standing in for / : proc/sys/vm with empty kernel knobs, no container hints."""
    vm = tmp_path / "root/proc/sys/vm"
    vm.mkdir(parents=True)
    for knob in ("drop_caches", "compact_memory"):
        (vm / knob).write_text("")
    return tmp_path / "root"


def knob(host: Path, name: str) -> str:
    return (host / "proc/sys/vm" / name).read_text()


def environment(host: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "container"}
    env.update(IMAGENET_TFRECORDS_SYSROOT=str(host), PYTHONUNBUFFERED="1", **extra)
    return env


def spawn(args: list[str], env: dict[str, str]) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, [PURGE, *args], cwd=str(ROOT), env=env, encoding="utf-8", timeout=60,
                         dimensions=(60, 250))


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, PURGE, *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, check=False)


def finish(child: pexpect.spawn) -> tuple[int, str]:
    child.expect(pexpect.EOF)
    text = child.before
    child.close()
    return child.exitstatus, text


def with_fake_sudo(tmp_path: Path, host: Path, on_success: str = ALLOWED) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sudo = bin_dir / "sudo"
    sudo.write_text(FAKE_SUDO.replace("{password}", f"'{PASSWORD}'").replace("{on_success}", on_success))
    sudo.chmod(0o755)
    return environment(host, PATH=f"{bin_dir}:{os.environ['PATH']}", IMAGENET_TFRECORDS_FORCE_SUDO="1")


def test_as_root_reports_memory_then_drops_and_compacts(host: Path) -> None:
    child = spawn(["--compact", "--match", f"nothing-{uuid.uuid4()}"], environment(host))
    child.expect_exact("memory")
    child.expect_exact("swap total")
    child.expect_exact("Sync, then write 3 to")
    child.expect_exact("(as root)? [Y/n] ")
    assert knob(host, "drop_caches") == ""  # nothing before the answer
    child.sendline("")
    child.expect_exact("page cache dropped and memory compacted")
    status, text = finish(child)
    assert status == 0
    assert knob(host, "drop_caches") == "3\n" and knob(host, "compact_memory") == "1\n"
    table = dict(re.findall(r"^(total|available|free|page cache|swap used)\s+(\d+\.\d\d) GiB", text, re.MULTILINE))
    assert set(table) == {"total", "available", "free", "page cache", "swap used"}
    assert float(table["total"]) == round(psutil.virtual_memory().total / (1 << 30), 2)


def test_dry_run_writes_nothing_and_json_has_real_readings(host: Path) -> None:
    result = run(["--dry-run", "--compact", "--json"], environment(host))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dry_run"] is True and report["written"] == [] and report["ended"] == []
    assert report["before"]["total"] == psutil.virtual_memory().total
    assert 0 < report["after"]["available"] <= report["after"]["total"]
    assert "would sync, then write 3 to" in result.stderr
    assert knob(host, "drop_caches") == "" and knob(host, "compact_memory") == ""


def test_threshold_leaves_the_cache_alone_above_it(host: Path) -> None:
    result = run(["--threshold", "0", "--yes"], environment(host))
    assert result.returncode == 0, result.stderr
    assert "not below --threshold 0 GiB" in result.stdout
    assert knob(host, "drop_caches") == ""


def test_no_terminal_without_yes_asks_for_it(host: Path) -> None:
    result = run([], environment(host))
    assert result.returncode == 1
    assert "pass --yes" in result.stderr and result.stderr.count("\n") == 1
    assert knob(host, "drop_caches") == ""


def in_container(host: Path, hint: str) -> dict[str, str]:
    """The environment of a stand-in host that shows one kind of container hint."""
    env = environment(host)
    if hint == "dockerenv":
        (host / ".dockerenv").write_text("")
    elif hint == "containerenv":
        (host / "run").mkdir()
        (host / "run/.containerenv").write_text("")
    elif hint == "cgroup":
        (host / "proc/1").mkdir()
        (host / "proc/1/cgroup").write_text("0::/system.slice/docker-4f1c2a.scope\n")
    else:
        env["container"] = "podman"
    return env


@pytest.mark.parametrize("hint", ["dockerenv", "containerenv", "cgroup", "variable"])
def test_refuses_in_a_container_unless_forced(host: Path, hint: str) -> None:
    env = in_container(host, hint)
    refused = run(["--yes"], env)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: ")
    assert "looks like a container" in refused.stderr and "--force" in refused.stderr and "--dry-run" in refused.stderr
    assert knob(host, "drop_caches") == ""
    forced = run(["--yes", "--force"], env)
    assert forced.returncode == 0, forced.stderr
    assert knob(host, "drop_caches") == "3\n"


@pytest.mark.parametrize("hint", ["dockerenv", "cgroup"])
def test_dry_run_runs_in_a_container_with_a_note(host: Path, hint: str) -> None:
    result = run(["--dry-run", "--json"], in_container(host, hint))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    note = next(line for line in result.stderr.splitlines() if line.startswith("note: "))
    assert "looks like a container" in note and "frees nothing of the host's" in note
    assert "would sync, then write 3 to" in result.stderr
    report = json.loads(result.stdout)
    assert report["container"] and report["dry_run"] is True and report["written"] == []
    assert knob(host, "drop_caches") == ""


def test_sudo_password_is_asked_without_echo_and_the_write_happens(tmp_path: Path, host: Path) -> None:
    child = spawn(["--yes", "--compact"], with_fake_sudo(tmp_path, host))
    child.expect_exact("password for sudo")
    child.sendline(PASSWORD)
    child.expect_exact("page cache dropped")
    assert PASSWORD not in child.before
    status, text = finish(child)
    assert status == 0 and PASSWORD not in text
    assert knob(host, "drop_caches") == "3\n" and knob(host, "compact_memory") == "1\n"


def test_sudo_wrong_password_is_reported_and_asked_again(tmp_path: Path, host: Path) -> None:
    child = spawn(["--yes"], with_fake_sudo(tmp_path, host))
    child.expect_exact("password for sudo")
    child.sendline("wrong")
    child.expect_exact("wrong password, try again")
    assert knob(host, "drop_caches") == ""
    child.sendline(PASSWORD)
    status, text = finish(child)
    assert status == 0 and "page cache dropped" in text
    assert knob(host, "drop_caches") == "3\n"


def test_sudo_wrong_password_every_time_is_a_clear_error(tmp_path: Path, host: Path) -> None:
    child = spawn(["--yes"], with_fake_sudo(tmp_path, host))
    for _ in range(3):
        child.expect_exact(["password for sudo", "wrong password, try again"])
        child.sendline("wrong")
    status, text = finish(child)
    assert status == 1
    assert "error: sudo: wrong password; nothing was written" in text
    assert knob(host, "drop_caches") == ""


def test_sudo_without_the_right_is_a_clear_error(tmp_path: Path, host: Path) -> None:
    child = spawn(["--yes"], with_fake_sudo(tmp_path, host, DENIED))
    child.expect_exact("password for sudo")
    child.sendline(PASSWORD)
    status, text = finish(child)
    assert status == 1
    assert "may not run commands as root" in text
    assert knob(host, "drop_caches") == ""


READY = "print('ready', flush=True)\n"  # each says so once started, so none is caught still starting up
IDLE = READY + "import time; time.sleep(600)"
BUSY = READY + "while True: pass"
BUSY_CHILD = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BUSY!r}, sys.argv[1]])"  # waits, idle
IDLE_CHILD = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {IDLE!r}, sys.argv[1]]); exec({BUSY!r})"
BIG = "held = b'x' * (64 << 20)\n" + IDLE  # 64 MiB resident
IDLE_TREE = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {BIG!r}, sys.argv[1]]); exec({IDLE!r})"
# Says SIGTERM when it gets one, then exits: how a test tells SIGTERM from SIGKILL in a process it cannot wait for.
IDLE_TERM = ("import signal, sys\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(print('SIGTERM', flush=True)))\n"
             + IDLE)
# Starts the command in argv[1] (JSON) and exits at once, so it is reparented: a leftover (new session: its own).
ORPHAN = ("import json, subprocess, sys; a = json.loads(sys.argv[1]); print(subprocess.Popen(a['argv'], cwd=a['cwd'], "
          "user=a['user'], start_new_session=a['session']).pid, flush=True)")
# Starts argv[1:] in a session of its own (as pytest starts the moto and GCS stand-ins), says its pid, waits on it.
LIVE_PARENT = ("import subprocess, sys; server = subprocess.Popen(sys.argv[1:], start_new_session=True); "
               "print(server.pid, flush=True); server.wait()")
END_WAIT_SECONDS = 10


def orphan_args(argv: list[str], cwd: Path | str | None = None, user: str | None = None,
                session: bool = True) -> list[str]:
    """The command line of a python process that starts `argv` and exits."""
    return [sys.executable, "-c", ORPHAN,
            json.dumps({"argv": argv, "cwd": None if cwd is None else str(cwd), "user": user, "session": session})]


def read_start(out: IO[str], lines: int) -> tuple[int, list[str]]:
    """The pid an ORPHAN says and the first `lines` lines of what it started (in whichever order they come)."""
    got = [out.readline() for _ in range(lines + 1)]
    assert all(got), got  # none is EOF: nothing died starting up
    (pid,) = (int(line) for line in got if line.strip().isdigit())
    return pid, [line for line in got if not line.strip().isdigit()]


def end(processes: list[psutil.Process]) -> None:
    """SIGKILL each process group and process that is still running, and wait until each is gone (a zombie
    counts: who reaps a reparented one is not ours to wait for)."""
    for process in processes:
        try:
            if process.is_running():
                os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            pass  # not a group leader (or gone): the process alone
        try:
            if process.is_running():
                process.kill()
        except psutil.Error:
            pass  # gone
    deadline = time.monotonic() + END_WAIT_SECONDS
    for process in processes:
        while time.monotonic() < deadline:
            try:
                if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)


@dataclass
class Leftover:
    """A real process whose parent has exited: reparented, as a build whose terminal was closed."""
    process: psutil.Process
    args: list[str]
    out: IO[str]  # what it prints

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        try:
            return self.process.is_running() and self.process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False


@pytest.fixture
def marker() -> str:
    return f"stale_build_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def start(marker: str) -> Iterator[Callable[..., Leftover]]:
    """Starts a real leftover process of this user: python running CODE with `marker` on its command line (or the
    command ARGV), its parent exited, in a session of its own, once it (or its child) printed `ready` lines; ends
    them all, and their groups, afterwards."""
    started: list[Leftover] = []

    def start_one(code: str | None = None, ready: int = 1, argv: list[str] | None = None, cwd: Path | str | None = None,
                  user: str | None = None) -> Leftover:
        argv = [sys.executable, "-c", code, marker] if argv is None else argv
        starter = subprocess.Popen(orphan_args(argv, cwd, user), stdout=subprocess.PIPE, text=True)
        pid, lines = read_start(starter.stdout, ready)
        started.append(Leftover(psutil.Process(pid), argv, starter.stdout))
        assert starter.wait(timeout=30) == 0
        if code is not None:
            assert lines == ["ready\n"] * ready
        parent = started[-1].process.ppid()  # reparented: to pid 1, or to a subreaper above this test
        assert parent == 1 or psutil.Process(parent).name() in REAPERS, (
            f"pid {pid} was reparented to pid {parent}, a subreaper the rule takes for a live parent")
        return started[-1]

    yield start_one
    end([leftover.process for leftover in started])
    for leftover in started:
        leftover.out.close()


@pytest.fixture
def live() -> Iterator[Callable[..., tuple[subprocess.Popen, list[str]]]]:
    """Starts a real process as a child of this live test, in a session of its own, with the first `lines` lines it
    printed; ends it, what runs below it and its group afterwards."""
    started: list[subprocess.Popen] = []

    def start_live(argv: list[str], lines: int, cwd: Path | None = None) -> tuple[subprocess.Popen, list[str]]:
        started.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=cwd, start_new_session=True))
        got = [started[-1].stdout.readline() for _ in range(lines)]
        assert all(got), got
        return started[-1], got

    yield start_live
    for process in started:
        if process.poll() is None:  # not yet reaped, so its pid is still its own
            parent = psutil.Process(process.pid)
            end([*parent.children(recursive=True), parent])
        process.wait()
        process.stdout.close()


@pytest.fixture
def stale_build(start) -> Leftover:
    """A real idle leftover python process of this user, recognisable by its command line; says SIGTERM on one."""
    return start(IDLE_TERM)


def listed(host: Path, *args: str) -> set[int]:
    """The pids a dry run offers."""
    result = run(["--dry-run", "--json", *args], environment(host))
    assert result.returncode == 0, result.stderr
    return {p["pid"] for p in json.loads(result.stdout)["processes"]}


def row_of(text: str, pid: int) -> str | None:
    match = re.search(rf"^\s*(\d+)\s+{pid}\s", text, re.MULTILINE)
    return match.group(1) if match else None


def test_only_idle_processes_old_enough_are_offered(host: Path, marker: str, start) -> None:
    idle, busy, waiting, working = start(IDLE), start(BUSY), start(BUSY_CHILD), start(IDLE_CHILD, ready=2)
    (idle_worker,) = working.process.children()
    tree = start(IDLE_TREE, ready=2)
    (tree_worker,) = tree.process.children()
    offered = listed(host, "--match", marker, "--min_age", "0")
    assert idle_worker.pid not in offered  # idle, but in the group of a busy process: a running job
    # not the busy one, nor the one waiting on a busy child; an idle leftover with its idle child (which its live
    # parent holds, but that parent is offered too) is offered whole
    assert offered == {idle.pid, tree.pid, tree_worker.pid}
    assert listed(host, "--match", marker) == set()  # all started seconds ago: younger than the default 10 minutes
    assert all(p.running() for p in (idle, busy, waiting, working, tree))


def test_top_lists_a_leftover_only_with_the_leftover_that_holds_it(host: Path, marker: str, start) -> None:
    tree = start(IDLE_TREE, ready=2)
    (worker,) = tree.process.children()
    assert worker.memory_info().rss > tree.process.memory_info().rss + (32 << 20)  # the largest: first by size
    assert listed(host, "--match", marker, "--min_age", "0", "--top", "1") == {tree.pid}  # not its worker alone
    assert listed(host, "--match", marker, "--min_age", "0", "--top", "2") == {tree.pid, worker.pid}


def test_a_server_that_a_live_process_started_is_never_offered(tmp_path: Path, host: Path, marker: str, start,
                                                               live) -> None:
    """As pytest starts its moto and GCS stand-ins: children of a live process, each in a session of its own."""
    (tmp_path / marker).mkdir()
    server = [sys.executable, "-u", "-m", "http.server", "-b", "127.0.0.1", "-d", marker, "0"]
    parent, lines = live([sys.executable, "-c", LIVE_PARENT, *server], lines=2, cwd=tmp_path)
    (held,) = (psutil.Process(int(line)) for line in lines if line.strip().isdigit())  # the server's pid, and:
    assert any(line.startswith("Serving HTTP on 127.0.0.1") for line in lines) and held.ppid() == parent.pid
    assert os.getsid(held.pid) == held.pid  # its own session: only its live parent holds it
    leftover = start(argv=server, cwd=tmp_path)  # the same server, its parent gone
    offered = listed(host, "--match", marker, "--min_age", "0")
    assert offered == {leftover.pid}  # neither the held server nor its parent (which this live test holds)
    assert held.is_running() and parent.poll() is None and leftover.running()


def test_a_leftover_in_a_live_session_is_never_offered(host: Path, marker: str, start, live) -> None:
    """A job of a live session reparented to init (a shell's `(cmd &)`): its session leader still holds it."""
    in_session = [sys.executable, "-c", IDLE, marker]
    leader_code = f"import subprocess, sys, time; subprocess.run([sys.executable, '-c', {ORPHAN!r}, sys.argv[1]]); " + \
        "time.sleep(600)"
    leader, _ = live([sys.executable, "-c", leader_code, orphan_args(in_session, session=False)[-1]], lines=0)
    pid, lines = read_start(leader.stdout, 1)
    job = psutil.Process(pid)
    assert lines == ["ready\n"] and os.getsid(pid) == leader.pid and job.ppid() != leader.pid  # reparented
    stale = start(IDLE)
    offered = listed(host, "--match", marker, "--min_age", "0")
    assert offered == {stale.pid}  # the job's parent is gone, but its session leader lives
    assert job.is_running() and leader.poll() is None


def test_the_command_shown_is_what_runs_not_the_interpreter(tmp_path: Path, host: Path, marker: str,
                                                           start) -> None:
    (tmp_path / marker).mkdir()
    script = tmp_path / f"{marker}.py"
    script.write_text(IDLE)
    python = Path(sys.executable).name
    module = start(argv=[sys.executable, "-u", "-m", "http.server", "-b", "127.0.0.1", "-d", marker, "0"], cwd=tmp_path)
    by_script = start(argv=[sys.executable, "-u", str(script), "--port", "0"])
    result = run(["--dry-run", "--match", marker, "--min_age", "0"], environment(host))
    assert result.returncode == 0, result.stderr
    rows = {int(m.group(1)): m.group(0) for m in re.finditer(r"^\s*\d+\s+(\d+)\s.*$", result.stdout, re.MULTILINE)}
    # the interpreter's folder and options (-u) are not shown: what runs is, whatever the paths
    assert rows[module.pid].endswith(f"  {python} -m http.server -b 127.0.0.1 -d {marker} 0"), rows
    assert rows[by_script.pid].endswith(f"  {marker}.py --port 0"), rows
    assert not any(str(Path(sys.executable).parent) in row or str(tmp_path) in row for row in rows.values())


def test_stale_process_is_listed_and_kept_when_the_user_says_no(host: Path, stale_build: Leftover) -> None:
    child = spawn(["--threshold", "0", "--top", "1000", "--min_age", "0"], environment(host))  # python heuristic
    child.expect_exact("End which")
    row = row_of(child.before, stale_build.pid)
    assert row is not None, child.before
    assert row_of(child.before, child.pid) is None  # never itself
    child.sendline(row)
    child.expect_exact(f"pid {stale_build.pid}: ")
    child.expect_exact("End these 1 process(es)? [y/N] ")
    child.sendline("n")
    status, text = finish(child)
    assert status == 0 and "nothing ended" in text
    assert stale_build.running()


def test_stale_process_is_ended_after_confirmation(host: Path, stale_build: Leftover) -> None:
    child = spawn(["--threshold", "0", "--match", stale_build.args[-1], "--min_age", "0"], environment(host))
    child.expect_exact("End which")
    row = row_of(child.before, stale_build.pid)
    assert row == "1", child.before
    child.sendline("7")  # not a row: asked again
    child.expect_exact("not a row number in 1..1")
    child.expect_exact("End which")
    child.sendline(row)
    # what runs, without the interpreter's folder, on one line (its newlines spaces), cut from the left
    shown = " ".join(f"{Path(sys.executable).name} -c {IDLE_TERM} {stale_build.args[-1]}".split())
    assert len(shown) > COMMAND_WIDTH  # so it must be cut, wherever the checkout lives
    child.expect_exact(f"pid {stale_build.pid}: …{shown[len(shown) - COMMAND_WIDTH + 1:]}\r\n")
    child.expect_exact("End these 1 process(es)? [y/N] ")
    assert stale_build.running()
    child.sendline("y")
    status, text = finish(child)
    assert status == 0 and f"ended pid {stale_build.pid}" in text
    assert stale_build.out.readline() == "SIGTERM\n"  # asked to end, not killed
    assert not stale_build.running()


def test_other_users_processes_are_never_listed(host: Path, stale_build: Leftover, start) -> None:
    marker = stale_build.args[-1]
    other = start(argv=["bash", "-c", f"exec -a {marker} sleep 600"], ready=0, cwd="/", user="nobody")
    for _ in range(100):  # until bash has exec'd into the renamed sleep
        if marker in " ".join(other.process.cmdline()):
            break
        time.sleep(0.05)
    offered = listed(host, "--match", marker, "--min_age", "0")
    assert marker in " ".join(other.process.cmdline()) and other.process.uids().real != os.getuid()
    assert offered == {stale_build.pid}  # a leftover too, but not of this user
    assert other.running()
