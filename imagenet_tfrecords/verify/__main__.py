"""`python -m imagenet_tfrecords.verify`."""

import sys

from .command import main

sys.exit(main())
