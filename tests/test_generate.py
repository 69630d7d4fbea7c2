"""generate_tfrecord_protos.py, driven as a user would: a real terminal (pexpect), a real sample, real TensorFlow."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from test_bad_input import assert_one_line_error

from imagenet_tfrecords.inputs.labels import DEFAULT_LABELS_FILE, load_wnids
from imagenet_tfrecords.sample import Sample, make_sample

ROOT = Path(__file__).resolve().parents[1]
GENERATE = str(ROOT / "generate_tfrecord_protos.py")
SMALL = ["--train_shards", "2", "--validation_shards", "1", "--num_threads", "1"]
FITTED = ["train-00000-of-00001", "validation-00000-of-00001"]  # the sample's 100 and 20 images, no shard flags
PROMPTS = (  # the questions, in the order they must come
    "Where is the raw data",
    "Where should the TFRecord files go?",
    "Labels file, one class per line",
    "Store pre-resized images (recommended) or the originals?",
    "Height after resizing",
    "Width after resizing",
    "Resize mode:",
    "JPEG quality of re-encoded images",
    "Label convention:",
)
REASONS = ("no such directory", "holds neither train/ nor validation/", "not a whole number", "must be in 1..100",
           "not one of 1, 0")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("IMAGENET_DATA_DIR", "PROTO_OUT_DIR", "container")}
    env.update(PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def spawn(args: list[str], env: dict[str, str]) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, [GENERATE, *args], cwd=str(ROOT), env=env, encoding="utf-8", timeout=120,
                         dimensions=(50, 400))


def next_prompt(child: pexpect.spawn) -> str:
    """The next question or re-ask reason shown, whichever comes first."""
    return (PROMPTS + REASONS)[child.expect_exact([*PROMPTS, *REASONS])]


def shard_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*-of-*"))}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return make_sample(tmp_path_factory.mktemp("generate") / "raw")


@pytest.fixture(scope="module")
def session(sample: Sample, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One interactive run, no shard flags: bad answers re-asked, defaults taken, height 224 (the width follows),
    labels 0..999, the build run; what it showed and made."""
    out = tmp_path_factory.mktemp("interactive") / "shards"
    child = spawn(["--num_threads", "1", "--min_free_gb", "0"], clean_env())
    seen = []

    def shows(expected: str) -> None:
        shown = next_prompt(child)
        seen.append(shown)
        assert shown == expected, f"expected {expected!r}, got {shown!r}; so far {seen}"

    def answer(question: str, reply: str, end: str = "] ") -> str:
        shows(question)
        child.expect_exact("? " if question == PROMPTS[0] else end)  # the data dir has no default here
        prompt = question + child.before + child.after
        child.sendline(reply)
        return prompt

    answer(PROMPTS[0], str(sample.root / "missing"))
    shows("no such directory")  # the reason, then the same question again
    answer(PROMPTS[0], str(sample.train_dir))  # a directory, but not the download target
    shows("holds neither train/ nor validation/")
    answer(PROMPTS[0], str(sample.root))
    output_prompt = answer(PROMPTS[1], str(out))
    labels_prompt = answer(PROMPTS[2], "", "? ")
    resize_prompt = answer(PROMPTS[3], "")
    height_prompt = answer(PROMPTS[4], "abc")
    shows("not a whole number")
    answer(PROMPTS[4], "224")
    width_prompt = answer(PROMPTS[5], "")
    mode_prompt = answer(PROMPTS[6], "")
    answer(PROMPTS[7], "150")
    shows("must be in 1..100")
    answer(PROMPTS[7], "")
    label_prompt = answer(PROMPTS[8], "2")
    shows("not one of 1, 0")
    answer(PROMPTS[8], "0")
    child.expect_exact("running: ")
    child.expect_exact("\r\n")
    command = child.before
    child.expect(pexpect.EOF)
    child.close()
    return {"out": out, "command": command, "exit": child.exitstatus, "output_prompt": output_prompt,
            "resize_prompt": resize_prompt, "height_prompt": height_prompt, "width_prompt": width_prompt,
            "mode_prompt": mode_prompt, "label_prompt": label_prompt,
            "labels_prompt": labels_prompt}


def test_prompts_show_defaults_and_the_build_succeeds(session: dict, sample: Sample) -> None:
    assert session["exit"] == 0
    assert f"[{sample.root / 'tfrecords'}]" in session["output_prompt"]
    assert "[resized]" in session["resize_prompt"]
    assert "352" in session["height_prompt"] and "aspect" in session["height_prompt"] and "[256]" in session["height_prompt"]
    assert "original NVIDIA scripts" in session["height_prompt"] and "seed" not in session["height_prompt"]
    assert "[224]" in session["width_prompt"]  # the width follows the height typed
    assert all(mode in session["mode_prompt"] for mode in ("stretch", "shorter_side", "center_crop"))
    assert all(word in session["label_prompt"] for word in ("1..1000", "background", "0..999", "TFDS", "[1]"))
    assert "Enter: the 1000 ImageNet classes" in session["labels_prompt"]
    assert sorted(shard_bytes(session["out"])) == FITTED  # shard counts fitted to the sample


def test_printed_command_has_the_answers(session: dict, sample: Sample) -> None:
    argv = shlex.split(session["command"])
    assert argv[:2] == [sys.executable, str(ROOT / "build_imagenet_data.py")]  # runs from any folder
    flags = dict(zip(argv[2:-1], argv[3:], strict=True))  # each word with the next one
    assert flags["--train_directory"] == str(sample.train_dir)
    assert flags["--validation_directory"] == str(sample.validation_dir)
    assert flags["--bounding_box_file"] == str(sample.bounding_box_file)
    assert flags["--new_height"] == flags["--new_width"] == "224"
    assert flags["--resize_mode"] == "stretch" and flags["--jpeg_q"] == "90" and flags["--label_offset"] == "0"
    assert "--train_shards" not in argv and "--validation_shards" not in argv
    assert "--resize_images" in argv


def test_printed_command_gives_the_same_shards(session: dict, tmp_path: Path) -> None:
    argv = shlex.split(session["command"])
    argv[argv.index("--output_directory") + 1] = str(tmp_path / "again")
    subprocess.run(argv, cwd=ROOT, env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=120)
    again, first = shard_bytes(tmp_path / "again"), shard_bytes(session["out"])
    assert again.keys() == first.keys() and len(first) == 2
    assert again == first


def test_shards_read_with_tf_data_have_the_label_convention_asked(session: dict) -> None:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    from tfread import decode, read_split

    wnids = load_wnids(DEFAULT_LABELS_FILE)
    counts, boxes = {}, 0
    for split in ("train", "validation"):
        records = read_split(session["out"], split)
        counts[split] = len(records)
        for record in records:
            assert decode(record["image/encoded"]).shape == (224, 224, 3)
            assert record["image/class/label"] == wnids.index(record["image/class/synset"])  # 0..999: TFDS's
            boxes += len(record["image/object/bbox/xmin"])
    assert counts == {"train": 100, "validation": 20}
    assert boxes > 0  # bounding_boxes.csv beside train/ was passed on


def test_no_terminal_and_no_data_dir_is_one_clear_error(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, GENERATE], cwd=ROOT, env=clean_env(), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "no terminal" in result.stderr and "--data_dir" in result.stderr and "IMAGENET_DATA_DIR" in result.stderr
    assert "running:" not in result.stdout


def test_environment_and_flags_answer_everything_without_a_terminal(sample: Sample, tmp_path: Path) -> None:
    vm = tmp_path / "root/proc/sys/vm"
    vm.mkdir(parents=True)
    (vm / "drop_caches").write_text("")
    env = clean_env(IMAGENET_DATA_DIR=str(sample.root), PROTO_OUT_DIR=str(tmp_path / "env_out"),
                    IMAGENET_TFRECORDS_SYSROOT=str(tmp_path / "root"))
    result = subprocess.run([sys.executable, GENERATE, *SMALL, "--no_resize", "--jpeg_q", "95", "--min_free_gb", "1e9",
                             "--resize_quality", "best"],
                            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not any(prompt in result.stdout for prompt in PROMPTS)
    assert "memory available" in result.stdout and "purge_mem_caches.py" in result.stdout  # warned...
    assert (vm / "drop_caches").read_text() == ""  # ...but never purged without asking
    command = next(line for line in result.stdout.splitlines() if line.startswith("running: "))
    assert "--resize_images" not in command and "--jpeg_q 95" in command and "--resize_quality best" in command
    assert "--label_offset 1" in command  # the Inception convention unless asked otherwise
    assert len(shard_bytes(tmp_path / "env_out")) == 3
    from tfread import read_split

    wnids = load_wnids(DEFAULT_LABELS_FILE)
    records = read_split(tmp_path / "env_out", "train")
    assert all(r["image/class/label"] == wnids.index(r["image/class/synset"]) + 1 for r in records)


def test_bad_flag_value_is_one_line_error(sample: Sample) -> None:
    result = subprocess.run([sys.executable, GENERATE, "--data_dir", str(sample.root), "--jpeg_q", "0", "--yes"],
                            cwd=ROOT, env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: --jpeg_q: must be in 1..100, got 0"


def test_low_memory_offers_the_purge_and_runs_it_when_accepted(sample: Sample, tmp_path: Path) -> None:
    vm = tmp_path / "root/proc/sys/vm"
    vm.mkdir(parents=True)
    (vm / "drop_caches").write_text("")
    env = clean_env(IMAGENET_TFRECORDS_SYSROOT=str(tmp_path / "root"))
    child = spawn(["--data_dir", str(sample.root), "--output_directory", str(tmp_path / "out"), "--no_resize",
                   "--jpeg_q", "90", "--label_offset", "1", "--min_free_gb", "1e9", *SMALL], env)
    child.expect_exact(PROMPTS[2])  # the labels file: no flag for it here, so it is asked
    child.expect_exact("? ")
    child.sendline("")
    child.expect_exact("memory available")
    child.expect_exact("Run purge_mem_caches.py now")
    child.expect_exact("[y/N] ")
    child.sendline("y")
    child.expect_exact("page cache dropped")
    if child.expect_exact(["End which", "running: "]) == 0:  # other python processes of this user may be listed
        child.sendline("")
        child.expect_exact("running: ")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (vm / "drop_caches").read_text() == "3\n"
    assert len(shard_bytes(tmp_path / "out")) == 3


def test_skip_bad_images_is_passed_on_as_the_build_error_advises(sample: Sample, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    for wnid in sorted(p.name for p in sample.train_dir.iterdir())[:2]:
        shutil.copytree(sample.train_dir / wnid, raw / "train" / wnid)
    images = sorted((raw / "train").glob("*/*.JPEG"))
    images[0].write_bytes(images[0].read_bytes()[:300])  # cut short, as by a failed copy

    def build(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, GENERATE, "--data_dir", str(raw), "--yes", "--no_resize",
                               "--num_threads", "1", "--min_free_gb", "0", *extra], cwd=ROOT, env=clean_env(),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)

    assert_one_line_error(build("--output_directory", str(tmp_path / "stopped")), str(images[0]),
                          "re-run with --skip_bad_images")
    skipped = build("--output_directory", str(tmp_path / "skipped"), "--skip_bad_images")
    assert skipped.returncode == 0, skipped.stderr
    assert "--skip_bad_images" in next(line for line in skipped.stdout.splitlines() if line.startswith("running: "))
    assert str(images[0]) in (tmp_path / "skipped" / "bad_images.tsv").read_text()
    from tfread import read_split

    names = {r["image/filename"] for r in read_split(tmp_path / "skipped", "train")}
    assert names == {p.name for p in images[1:]}


def test_memory_warning_threshold_is_what_this_builder_needs() -> None:
    from imagenet_tfrecords.generate import memory_need
    from imagenet_tfrecords.host.memory import GIB, MIB

    assert memory_need(2) < GIB  # measured: 227 MiB peak for a 2-worker build (docs/memory.md)
    assert 256 * MIB < memory_need(1) < memory_need(2) < memory_need(64) < 16 * GIB
