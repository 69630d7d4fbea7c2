"""Host memory: readings, container detection, and dropping the page cache as root or through sudo.

Two environment variables exist for the tests only: IMAGENET_TFRECORDS_SYSROOT makes a directory
stand in for / where the kernel knobs (/proc/sys/vm) and the container hints are looked up, and
IMAGENET_TFRECORDS_FORCE_SUDO=1 takes the sudo path even when running as root.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pexpect
import psutil

from ..errors import UserError

log = logging.getLogger(__name__)

MIB = 1 << 20
GIB = 1 << 30
SYSROOT_ENV = "IMAGENET_TFRECORDS_SYSROOT"  # tests: a directory standing in for /
FORCE_SUDO_ENV = "IMAGENET_TFRECORDS_FORCE_SUDO"  # tests: use sudo even as root
DROP_CACHES = ("drop_caches", "3")  # 3: page cache, dentries and inodes (Documentation/admin-guide/sysctl/vm.rst)
COMPACT_MEMORY = ("compact_memory", "1")
SUDO_PROMPT = "[imagenet-tfrecords] sudo password: "  # ours, so it can be told apart from any output
SUDO_TRIES = 3  # sudo's default passwd_tries
SUDO_TIMEOUT_SECONDS = 120
_CONTAINER_FILES = (".dockerenv", "run/.containerenv")
_CONTAINER_CGROUP_WORDS = ("docker", "kubepods", "containerd", "libpod", "lxc", "podman")
_NO_RIGHT_PHRASES = ("not in the sudoers", "is not allowed to", "may not run sudo", "not allowed to execute")
_WRONG_PASSWORD_PHRASES = ("incorrect password", "sorry, try again")


@dataclass(frozen=True)
class MemoryReading:
    """Bytes, as psutil reads them from /proc/meminfo."""

    total: int
    available: int
    free: int
    page_cache: int  # Cached + Buffers
    swap_total: int
    swap_used: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


MEMORY_ROWS = (("total", "total"), ("available", "available"), ("free", "free"),
               ("page cache", "page_cache"), ("swap used", "swap_used"), ("swap total", "swap_total"))


def read_memory() -> MemoryReading:
    vm, swap = psutil.virtual_memory(), psutil.swap_memory()
    return MemoryReading(vm.total, vm.available, vm.free, getattr(vm, "cached", 0) + getattr(vm, "buffers", 0),
                         swap.total, swap.used)


def gib(value: int) -> str:
    return f"{value / GIB:.2f} GiB"


def format_memory_table(before: MemoryReading, after: MemoryReading | None = None) -> str:
    """A table of the readings; with `after`, a column for it and one for the change."""
    header = f"{'memory':<12} {'before':>12}" + (f" {'after':>12} {'change':>12}" if after else "")
    lines = [header]
    for label, name in MEMORY_ROWS:
        line = f"{label:<12} {gib(getattr(before, name)):>12}"
        if after:
            change = getattr(after, name) - getattr(before, name)
            line += f" {gib(getattr(after, name)):>12} {round(change / GIB, 2) + 0.0:>+8.2f} GiB"
        lines.append(line)
    return "\n".join(lines)


def sysroot() -> Path:
    return Path(os.environ.get(SYSROOT_ENV) or "/")


def vm_dir() -> Path:
    return sysroot() / "proc/sys/vm"


def container_hint() -> str | None:
    """Why this looks like a container (where dropping caches frees nothing of the host's), or None."""
    root = sysroot()
    for name in _CONTAINER_FILES:
        if (root / name).exists():
            return f"/{name} exists"
    if os.environ.get("container"):
        return f"the environment says container={os.environ['container']}"
    try:
        cgroup = (root / "proc/1/cgroup").read_text().lower()
    except OSError:
        return None
    word = next((w for w in _CONTAINER_CGROUP_WORDS if w in cgroup), None)
    return f"/proc/1/cgroup mentions {word}" if word else None


def knobs(compact: bool) -> list[tuple[Path, str]]:
    """The kernel files to write, with their values, in order."""
    wanted = [DROP_CACHES] + ([COMPACT_MEMORY] if compact else [])
    return [(vm_dir() / name, value) for name, value in wanted]


def uses_sudo() -> bool:
    return os.geteuid() != 0 or os.environ.get(FORCE_SUDO_ENV) == "1"


def write_knobs(targets: list[tuple[Path, str]], ask_password: Callable[[str], str]) -> None:
    """`sync`, then write each value into its kernel file: directly as root, else through sudo."""
    for path, _ in targets:
        if not path.exists():
            raise UserError(f"{path} does not exist: this needs a Linux host with a page cache to drop")
    os.sync()
    if not uses_sudo():
        for path, value in targets:
            try:
                path.write_text(value + "\n")
            except OSError as exc:
                raise UserError(f"cannot write {path} ({exc.strerror}): run this on the host, as root") from None
            log.info("wrote %s to %s", value, path)
        return
    script = " && ".join(f"echo {value} > {shlex.quote(str(path))}" for path, value in targets)
    run_with_sudo(["sh", "-c", script], ask_password)
    log.info("wrote %s through sudo", ", ".join(f"{value} to {path}" for path, value in targets))


def run_with_sudo(command: list[str], ask_password: Callable[[str], str]) -> None:
    """Run `command` as root with sudo in a pseudo-terminal, asking the user for the password if sudo does."""
    sudo = shutil.which("sudo")
    if sudo is None:
        raise UserError("not running as root and there is no sudo: run this as root")
    child = pexpect.spawn(sudo, ["-p", SUDO_PROMPT, "--", *command], encoding="utf-8", timeout=SUDO_TIMEOUT_SECONDS)
    output: list[str] = []
    sent: list[str] = []
    prompts = 0
    try:
        while child.expect_exact([SUDO_PROMPT, pexpect.EOF]) == 0:
            output.append(child.before or "")
            if prompts == SUDO_TRIES:
                raise UserError(f"sudo: {SUDO_TRIES} wrong passwords; nothing was written")
            retry = prompts > 0
            prompts += 1
            sent.append(ask_password("wrong password, try again: " if retry else f"password for sudo ({_user()}): "))
            child.sendline(sent[-1])
        output.append(child.before or "")
    except pexpect.TIMEOUT:
        raise UserError(f"sudo did not finish within {SUDO_TIMEOUT_SECONDS} s; nothing was written") from None
    finally:
        child.close(force=True)
    if child.exitstatus == 0:
        return
    text = "".join(output)
    for password in filter(None, sent):  # in case this sudo echoes it
        text = text.replace(password, "***")
    lowered = text.lower()
    if any(phrase in lowered for phrase in _NO_RIGHT_PHRASES):
        raise UserError(f"sudo: {_user()} may not run commands as root here; run this as root or ask an administrator")
    if any(phrase in lowered for phrase in _WRONG_PASSWORD_PHRASES):
        raise UserError("sudo: wrong password; nothing was written")
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "no output")
    raise UserError(f"sudo failed (exit status {child.exitstatus}): {last}")


def _user() -> str:
    try:
        return psutil.Process().username()
    except (psutil.Error, KeyError):
        return str(os.getuid())
