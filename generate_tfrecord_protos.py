#!/usr/bin/env python3
"""Not built yet: will ask for the build options and run build_imagenet_data.py (issue #4)."""

import sys

if __name__ == "__main__":
    print("generate_tfrecord_protos.py is not implemented yet (issue #4); use build_imagenet_data.py on extracted images", file=sys.stderr)
    sys.exit(2)
