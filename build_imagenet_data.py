#!/usr/bin/env python3
"""Build ImageNet TFRecord shards (Inception schema). See `--help` and README.md."""

import sys

from imagenet_tfrecords.commands import build_imagenet_data

if __name__ == "__main__":
    sys.exit(build_imagenet_data())
