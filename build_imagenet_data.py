#!/usr/bin/env python3
"""Build ImageNet TFRecord shards (Inception schema). See `--help` and README.md."""

import sys

from imagenet_tfrecords.cli import main

if __name__ == "__main__":
    sys.exit(main())
