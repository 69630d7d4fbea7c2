#!/usr/bin/env python3
"""Download, verify and unpack the ILSVRC-2012 archives (or import ones already on disk). See README.md."""

import sys

from imagenet_tfrecords.commands import download_imagenet

if __name__ == "__main__":
    sys.exit(download_imagenet())
