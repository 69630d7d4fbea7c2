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
from pathlib import Path

import pexpect
import psutil
import pytest

from imagenet_tfrecords.host.processes import COMMAND_WIDTH

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
                          capture_output=True, text=True, timeout=60)


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
    table = dict(re.findall(r"^(total|available|free|page cache|swap used)\s+(\d+\.\d\d) GiB", text, re.M))
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


@pytest.fixture
def marker() -> str:
    return f"stale_build_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def start(marker: str):
    """Starts a real python process of this user running CODE, with `marker` on its command line, once it (or its
    child) says it is ready; ends them all, and their children, afterwards."""
    started: list[subprocess.Popen] = []

    def start_one(code: str, ready: int = 1) -> subprocess.Popen:
        started.append(subprocess.Popen([sys.executable, "-c", code, marker], stdout=subprocess.PIPE, text=True,
                                        start_new_session=True))
        assert [started[-1].stdout.readline() for _ in range(ready)] == ["ready\n"] * ready
        return started[-1]

    yield start_one
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the group: a child it started, too
        process.wait()
        process.stdout.close()


@pytest.fixture
def stale_build(start) -> subprocess.Popen:
    """A real idle leftover python process of this user, recognisable by its command line."""
    return start(IDLE)


def listed(host: Path, *args: str) -> set[int]:
    """The pids a dry run offers."""
    result = run(["--dry-run", "--json", *args], environment(host))
    assert result.returncode == 0, result.stderr
    return {p["pid"] for p in json.loads(result.stdout)["processes"]}


def row_of(text: str, pid: int) -> str | None:
    match = re.search(rf"^\s*(\d+)\s+{pid}\s", text, re.M)
    return match.group(1) if match else None


def test_only_idle_processes_old_enough_are_offered(host: Path, marker: str, start) -> None:
    idle, busy, waiting, working = start(IDLE), start(BUSY), start(BUSY_CHILD), start(IDLE_CHILD, ready=2)
    (idle_worker,) = psutil.Process(working.pid).children()
    offered = listed(host, "--match", marker, "--min_age", "0")
    assert idle_worker.pid not in offered  # idle, but in the group of a busy process: a running job
    assert offered == {idle.pid}  # not the busy one, nor the one waiting on a busy child
    assert listed(host, "--match", marker) == set()  # all started seconds ago: younger than the default 10 minutes
    assert all(p.poll() is None for p in (idle, busy, waiting, working))


def test_stale_process_is_listed_and_kept_when_the_user_says_no(host: Path, stale_build: subprocess.Popen) -> None:
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
    assert stale_build.poll() is None


def test_stale_process_is_ended_after_confirmation(host: Path, stale_build: subprocess.Popen) -> None:
    child = spawn(["--threshold", "0", "--match", stale_build.args[-1], "--min_age", "0"], environment(host))
    child.expect_exact("End which")
    row = row_of(child.before, stale_build.pid)
    assert row == "1", child.before
    child.sendline("7")  # not a row: asked again
    child.expect_exact("not a row number in 1..1")
    child.expect_exact("End which")
    child.sendline(row)
    command = " ".join(" ".join(stale_build.args).split())  # on one line: its newline a space
    assert len(command) > COMMAND_WIDTH  # so it must be cut, wherever the checkout lives
    child.expect_exact(f"pid {stale_build.pid}: {command[:COMMAND_WIDTH - 3]}...")
    child.expect_exact("End these 1 process(es)? [y/N] ")
    assert stale_build.poll() is None
    child.sendline("y")
    status, text = finish(child)
    assert status == 0 and f"ended pid {stale_build.pid}" in text
    assert stale_build.wait(timeout=30) == -signal.SIGTERM


def test_other_users_processes_are_never_listed(host: Path, stale_build: subprocess.Popen) -> None:
    marker = stale_build.args[-1]
    other = subprocess.Popen(["bash", "-c", f"exec -a {marker} sleep 600"], user="nobody", cwd="/")
    try:
        for _ in range(100):  # until bash has exec'd into the renamed sleep
            if marker in " ".join(psutil.Process(other.pid).cmdline()):
                break
            time.sleep(0.05)
        offered = listed(host, "--match", marker, "--min_age", "0")
        assert marker in " ".join(psutil.Process(other.pid).cmdline())
        assert offered == {stale_build.pid}
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
