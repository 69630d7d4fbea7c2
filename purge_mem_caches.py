#!/usr/bin/env python3
"""Not built yet: will free page cache and stale build processes on the host (issue #4)."""

import sys

if __name__ == "__main__":
    print("purge_mem_caches.py is not implemented yet (issue #4); use build_imagenet_data.py on extracted images", file=sys.stderr)
    sys.exit(2)
