#!/usr/bin/env python3
"""Free host memory for a build: report it, sync and drop the page cache, offer to end idle leftovers. See `--help`."""

import sys

from imagenet_tfrecords.commands import purge_mem_caches

if __name__ == "__main__":
    sys.exit(purge_mem_caches())
