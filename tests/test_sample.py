"""The sample is deterministic: the same bytes in any process, whatever ran before."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys

from PIL import Image

from conftest import REPO, run_build_cli
from imagenet_tfrecords.sample import _load_photos, make_photo

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


def test_the_readme_sample_command_run_again_resumes_every_shard(tmp_path) -> None:
    """Making the sample again writes nothing (same bytes, same mtimes), so the build sees the same inputs."""
    first = run_build_cli("--sample", tmp_path, "--num_threads", "1")
    made = {p: p.stat().st_mtime_ns for p in (tmp_path / "raw").rglob("*") if p.is_file()}
    again = run_build_cli("--sample", tmp_path, "--num_threads", "1")
    assert {p: p.stat().st_mtime_ns for p in made} == made
    rows = {line.split()[0]: line.split()[1:5] for line in again.stdout.splitlines()[1:3]}
    assert rows == {"validation": ["20", "0", "2", "2"], "train": ["100", "0", "4", "4"]}, first.stdout
