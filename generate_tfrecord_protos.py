#!/usr/bin/env python3
"""Ask for the build options (data, output, resizing, quality, labels), run build_imagenet_data.py. See `--help`."""

import sys
from pathlib import Path

from imagenet_tfrecords.commands import generate_tfrecord_protos

if __name__ == "__main__":
    sys.exit(generate_tfrecord_protos(Path(__file__).with_name("build_imagenet_data.py")))
