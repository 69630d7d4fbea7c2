#!/usr/bin/env python3
"""Free host memory for a build: report it, sync and drop the page cache, offer to end idle leftovers. See `--help`."""

import sys

from imagenet_tfrecords.host.purge import main

if __name__ == "__main__":
    sys.exit(main())
