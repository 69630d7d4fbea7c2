#!/usr/bin/env python3
"""Ask for the build options (data, output, resizing, quality, labels), run build_imagenet_data.py. See `--help`."""

import sys
from pathlib import Path

from imagenet_tfrecords.generate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], Path(__file__).with_name("build_imagenet_data.py")))
