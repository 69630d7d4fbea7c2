"""The words a user sees when a re-run changes an option, and when Ctrl-C lands while workers start."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import REPO, run_build_cli, sample_args
from imagenet_tfrecords.build import OPTION_FLAGS, BuildConfig
from imagenet_tfrecords.commands import INTERRUPTED_AT_START
from imagenet_tfrecords.errors import RESUME_HINT
from imagenet_tfrecords.inputs.labels import ClassTable
from test_bad_input import assert_one_line_error

LOG_LINE = re.compile(r"\d\d:\d\d:\d\d ")  # the build's progress and warning lines (cli's logging format)


def test_rerun_with_other_options_names_each_option_and_both_values(sample, tmp_path: Path) -> None:
    output = tmp_path / "out"
    first = ["--validation_directory", sample.validation_dir, "--output_directory", output,
             "--validation_shards", "2", "--resize_images", "--num_threads", "1"]
    run_build_cli(*first)
    result = run_build_cli(*first, "--jpeg_q", "75", "--resize_mode", "center_crop", "--label_offset", "0",
                           check=False)
    assert_one_line_error(result)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {output}: holds a build made with other options (--jpeg_q was 90, now 75; "
        '--resize_mode was "stretch", now "center_crop"; --label_offset was 1, now 0); run with the earlier values '
        "to resume it, use another --output_directory, or delete its shards and manifest.json"
    )
    assert run_build_cli(*first).returncode == 0  # the earlier values still resume it


def _workers_started(build: psutil.Process) -> list[psutil.Process]:
    """The build's spawned worker processes so far (they may still be importing)."""
    workers = []
    for child in build.children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                workers.append(child)
        except psutil.NoSuchProcess:
            pass
    return workers


def _workers_left(session: int) -> list[int]:
    """Worker processes still alive in the build's session, wherever they were reparented.
    (Multiprocessing's resource tracker, also in it, ends on its own once the build has exited.)"""
    alive = []
    for process in psutil.process_iter():
        try:
            if (os.getsid(process.pid) == session and process.status() != psutil.STATUS_ZOMBIE
                    and "spawn_main" in " ".join(process.cmdline())):
                alive.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return alive


def test_ctrl_c_while_workers_start_prints_only_the_resume_hint(sample, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) as the first worker
    appears and at moments while the workers are importing: one line, no worker traceback."""
    for moment in (0.0, 0.02, 0.05, 0.1, 0.2):
        output = tmp_path / f"out-{moment}"
        args = sample_args(sample, output, "--resize_images", "--num_threads", "2")
        build = subprocess.Popen([sys.executable, str(REPO / "build_imagenet_data.py"), *map(str, args)],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True)
        deadline = time.monotonic() + 60
        while not _workers_started(psutil.Process(build.pid)):
            assert build.poll() is None, "the build ended before its workers started"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        time.sleep(moment)
        os.killpg(build.pid, signal.SIGINT)
        printed, _ = build.communicate()
        assert build.returncode == 130, printed
        assert "Traceback" not in printed and "Process" not in printed and "KeyboardInterrupt" not in printed
        assert [line for line in printed.splitlines() if not LOG_LINE.match(line)] == [RESUME_HINT], printed
        assert _workers_left(build.pid) == [], "a worker outlived the interrupted build"
    assert run_build_cli(*args).returncode == 0  # and the same command resumes


def test_every_build_option_is_named_by_what_users_know() -> None:
    """A new option without a name in OPTION_FLAGS would be refused by its internal dotted name."""
    options = BuildConfig(output_dir=Path("out")).manifest_options(ClassTable(("cats", "dogs"), ("cats", "dogs")))
    dotted = {f"{key}.{inner}" for key, value in options.items() if isinstance(value, dict) for inner in value}
    dotted |= {key for key, value in options.items() if not isinstance(value, dict)}
    assert dotted == set(OPTION_FLAGS)


# Imported at the start of every Python run below it: a real SIGINT, sent by the process to itself the moment
# the package's `errors` module is looked for, lands inside the command's imports, as a fast Ctrl-C would.
INTERRUPT_DURING_IMPORTS = """
import os, signal, sys

class InterruptOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == "imagenet_tfrecords.errors":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, InterruptOnImport())
"""


@pytest.mark.parametrize("script", ["build_imagenet_data.py", "download_imagenet.py", "generate_tfrecord_protos.py",
                                    "purge_mem_caches.py"])
def test_ctrl_c_while_the_command_imports_is_one_line(script: str, tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(INTERRUPT_DURING_IMPORTS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    result = subprocess.run([sys.executable, str(REPO / script), "--help"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr
    assert result.returncode == 130
    assert result.stderr == INTERRUPTED_AT_START + "\n"
    assert result.stdout == ""  # interrupted before its --help
