"""The sample is deterministic: the same bytes in any process, whatever ran before; made once, then reused."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO, run_build_cli, shard_digests
from imagenet_tfrecords.sample import MARKER_NAME, _load_photos, make_photo
from test_bad_input import assert_one_line_error

PHOTO_DIGEST = (
    "import hashlib, random; from imagenet_tfrecords.sample import _load_photos, make_photo; "
    "print(hashlib.sha256(make_photo(_load_photos(), random.Random(5), (300, 200)).tobytes()).hexdigest())"
)


def test_photos_do_not_depend_on_earlier_random_calls_or_the_process() -> None:
    Image.effect_noise((64, 64), 5)  # C rand() state that a noise source must not depend on
    random.random()
    here = hashlib.sha256(make_photo(_load_photos(), random.Random(5), (300, 200)).tobytes()).hexdigest()
    fresh = subprocess.run([sys.executable, "-c", PHOTO_DIGEST], cwd=REPO, capture_output=True, text=True, check=True)
    assert fresh.stdout.strip() == here


def summary_rows(stdout: str) -> dict[str, list[str]]:
    """split -> [images, written, shards, resumed], from the build's summary table."""
    return {line.split()[0]: line.split()[1:5] for line in stdout.splitlines()[1:3]}


RESUMED = {"validation": ["20", "0", "2", "2"], "train": ["100", "0", "4", "4"]}
MADE = {"validation": ["20", "20", "2", "0"], "train": ["100", "100", "4", "0"]}


def stamps(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_the_readme_sample_command_run_again_reuses_the_sample_and_resumes_every_shard(tmp_path: Path) -> None:
    """The quick start twice: the second run makes no sample (not even its marker is written again) and writes no
    shard."""
    first = run_build_cli("--sample", tmp_path, "--resize_images", "--num_threads", "1")
    assert f"making the sample dataset under {tmp_path / 'raw'} (shards into {tmp_path / 'tfrecords'})" in first.stderr
    made = stamps(tmp_path / "raw")
    assert tmp_path / "raw" / MARKER_NAME in made and len(made) == 122
    again = run_build_cli("--sample", tmp_path, "--resize_images", "--num_threads", "1")
    assert stamps(tmp_path / "raw") == made
    assert f"using the sample dataset under {tmp_path / 'raw'}, made by an earlier run" in again.stderr
    assert "making the sample" not in again.stderr
    assert summary_rows(again.stdout) == RESUMED, first.stdout


@pytest.mark.parametrize("cache", ["XDG_CACHE_HOME", "HOME"])
def test_sample_alone_goes_to_the_users_own_cache(cache: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"}
    if cache == "XDG_CACHE_HOME":
        env["XDG_CACHE_HOME"], root = str(tmp_path / "cache"), tmp_path / "cache" / "imagenet-tfrecords" / "sample"
    else:
        env["HOME"], root = str(tmp_path / "home"), tmp_path / "home" / ".cache" / "imagenet-tfrecords" / "sample"
    result = run_build_cli("--sample", "--num_threads", "1", env=env, cwd=tmp_path)
    assert f"making the sample dataset under {root / 'raw'} (shards into {root / 'tfrecords'})" in result.stderr
    assert summary_rows(result.stdout) == MADE
    assert result.stdout.splitlines()[-1] == f"shards in {root / 'tfrecords'}"
    assert [p.name for p in tmp_path.iterdir()] == [root.relative_to(tmp_path).parts[0]]  # nothing in the cwd


def test_a_sample_cut_short_or_made_otherwise_is_made_again_in_place(tmp_path: Path) -> None:
    """A marker that does not match (another version made it), and a file cut short by a kill: made again, the
    whole files kept as they are, and the build gives the same shards."""
    run_build_cli("--sample", tmp_path, "--num_threads", "1")
    raw = tmp_path / "raw"
    shards = shard_digests(tmp_path / "tfrecords")
    cut = min((raw / "validation").iterdir())
    whole = cut.read_bytes()
    marker = json.loads((raw / MARKER_NAME).read_text())
    (raw / MARKER_NAME).write_text(json.dumps({**marker, "spec": "made by another version"}))
    cut.write_bytes(whole[:1000])
    before = stamps(raw)
    again = run_build_cli("--sample", tmp_path, "--num_threads", "1")
    assert "making the sample dataset under" in again.stderr
    assert cut.read_bytes() == whole
    after = stamps(raw)
    assert {p for p in after if after[p] != before[p]} == {cut, raw / MARKER_NAME}
    assert shard_digests(tmp_path / "tfrecords") == shards
    third = run_build_cli("--sample", tmp_path, "--num_threads", "1")
    assert "using the sample dataset" in third.stderr and summary_rows(third.stdout) == RESUMED


def test_a_folder_holding_other_files_is_not_taken_for_the_sample(tmp_path: Path) -> None:
    mine = tmp_path / "raw" / "train" / "n01440764" / "my_photo.JPEG"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own image")
    result = run_build_cli("--sample", tmp_path, "--num_threads", "1", check=False)
    assert_one_line_error(result)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {mine}: not part of the sample, which needs {tmp_path / 'raw'} to itself; move it away, "
        "or pass --sample a new or empty folder")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [mine] and mine.read_bytes() == b"my own image"
