#!/usr/bin/env python3
"""Download, verify and unpack the ILSVRC-2012 archives (or import ones already on disk). See README.md."""

import sys
from pathlib import Path

from imagenet_tfrecords.commands import download_imagenet

if __name__ == "__main__":
    sys.exit(download_imagenet(Path(__file__).with_name("build_imagenet_data.py")))
