#!/usr/bin/env python3
"""Not built yet: will download, verify and unpack the ILSVRC-2012 archives (issue #3)."""

import sys

if __name__ == "__main__":
    print("download_imagenet.py is not implemented yet (issue #3); use build_imagenet_data.py on extracted images", file=sys.stderr)
    sys.exit(2)
