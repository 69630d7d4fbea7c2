"""The sample is deterministic: the same bytes in any process, whatever ran before."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys

from PIL import Image

from conftest import REPO
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
