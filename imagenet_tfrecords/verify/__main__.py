"""`python -m imagenet_tfrecords.verify`."""

import sys

from ..commands import verify

sys.exit(verify())
