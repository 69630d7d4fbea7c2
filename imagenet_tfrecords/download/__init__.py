"""Getting the ILSVRC-2012 archives: credentials, HTTP download with resume, checksums, safe unpacking.

`cli` (behind `download_imagenet.py`) asks the questions; `pipeline.plan_archives` decides what each archive
still needs and `pipeline.run` does it.
"""
