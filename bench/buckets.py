#!/usr/bin/env python3
"""Throughput of builds that read or write a bucket against local ones, same corpus, same run, on loopback.

Starts its own moto S3 server on 127.0.0.1 (stopped at the end, also on an error or Ctrl-C) and
measures, in interleaved rounds (best of --repeats, each into a fresh output), images/s of:
tree -> local output; tree -> s3:// output; local train tar -> local output; the train tar in s3
-> local output (read by ranged requests; its header index is made once, by a first build whose
time is reported apart, and kept in the output's .tar_index); the tree in s3 -> local output.
moto on loopback measures the tool's own overhead (requests, the upload path), not a real store's
bandwidth; the request counts of each build are reported from moto's log. Prints one JSON object.
Run from the repository root (about 35 min on 2 cores, most of it the tar in s3, which moto serves
slowly; --skip_tar_in_s3 leaves it out: about 2 min):

    python bench/buckets.py --images 2000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import make_corpus  # noqa: E402
from tar_vs_tree import build_parser, pack_train_tar  # noqa: E402

from imagenet_tfrecords.build import BuildConfig, run_build  # noqa: E402
from imagenet_tfrecords.images.prepare import ImageOptions  # noqa: E402
from imagenet_tfrecords.inputs.tars import INDEX_DIR  # noqa: E402

BUCKET = "bench-buckets"
REQUEST_LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*(?P<method>GET|HEAD|PUT|POST|DELETE) ')  # werkzeug may colour it
RATIOS = {"output_s3": ("tree_local_to_s3", "tree_local_to_local"),  # each bucket path over its local twin
          "tar_in_s3": ("tar_s3_to_local", "tar_local_to_local"),
          "tree_in_s3": ("tree_s3_to_local", "tree_local_to_local")}
NOTE = ("moto on loopback: the figures measure the tool's overhead (request count, upload path), not a real "
        "store's bandwidth or latency; moto reads a whole object to serve each ranged GET (see "
        "moto_ms_per_64KiB_ranged_get), so the tar-in-s3 figure is bound by moto, not by the tool")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def moto_server(log: Path, timeout: float = 30.0) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, in its own process group, killed on the way out; yields its URL.
    Its request log (one line a request) goes to `log`."""
    port = free_port()
    with open(log, "w") as log_file:
        server = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"moto_server exited ({server.returncode}) before listening; see {log}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server is not listening on port {port} after {timeout:.0f} s") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


class RequestLog:
    """Counts, by HTTP method, the requests moto logged since the last call."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def since_last(self) -> dict[str, int]:
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            lines = log.read().decode(errors="replace").splitlines()
            self.offset = log.tell()
        counts = Counter(match["method"] for match in map(REQUEST_LINE.search, lines) if match)
        return dict(sorted(counts.items()))


def use_endpoint(endpoint: str) -> None:
    """Point s3fs (here and in the spawned workers) at the server, with moto's dummy credentials."""
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "FSSPEC_S3_ENDPOINT_URL": endpoint, "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    })


def clear_output(config: BuildConfig, fs, keep_index: bool = True) -> None:
    """Remove the last build's output; a local one's .tar_index is kept, as a resumed build keeps it."""
    output = str(config.output_dir)
    if output.startswith("s3://"):
        clear_bucket_folder(fs, output[len("s3://"):])
    else:
        clear_local_folder(Path(output), keep_index)


def clear_bucket_folder(fs, prefix: str) -> None:
    if fs.exists(prefix):
        fs.rm(prefix, recursive=True)
    fs.invalidate_cache()


def clear_local_folder(output: Path, keep_index: bool) -> None:
    kept = output.parent / f".kept-{output.name}"
    shutil.rmtree(kept, ignore_errors=True)
    if keep_index and (output / INDEX_DIR).exists():
        (output / INDEX_DIR).rename(kept)
    shutil.rmtree(output, ignore_errors=True)
    if kept.exists():
        output.mkdir(parents=True)
        kept.rename(output / INDEX_DIR)


def timed_build(config: BuildConfig, images: int) -> float:
    """Seconds of one build, checked to have written every image."""
    started = time.perf_counter()
    written = sum(summary.written for summary in run_build(config))
    seconds = time.perf_counter() - started
    if written != images:
        raise RuntimeError(f"{config.output_dir}: the build wrote {written} images, not {images}")
    return seconds


def timed(action: Callable[[], object]) -> float:
    """Seconds `action` takes."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def ranged_get_ms(fs, path: str, reads: int = 20) -> float:
    """Milliseconds moto takes to serve one 64 KiB ranged GET of the object at `path`."""
    return 1000 * timed(lambda: [fs.read_block(path, 0, 64 << 10) for _ in range(reads)]) / reads


def path_configs(args: argparse.Namespace, train: Path, tar: Path) -> dict[str, BuildConfig]:
    """The builds compared, by name: where the images are read from, and where the output goes."""
    out = args.work_dir / "out"
    common = dict(train_shards=args.shards, num_workers=args.workers, image=ImageOptions(resize=args.resize),
                  index_dir=None)
    configs = {
        "tree_local_to_local": BuildConfig(output_dir=out / "tree-local", train_dir=train, **common),
        "tree_local_to_s3": BuildConfig(output_dir=f"s3://{BUCKET}/out", train_dir=train, **common),
        "tar_local_to_local": BuildConfig(output_dir=out / "tar-local", train_tar=tar, **common),
        "tar_s3_to_local": BuildConfig(output_dir=out / "tar-s3", train_tar=f"s3://{BUCKET}/{tar.name}", **common),
        "tree_s3_to_local": BuildConfig(output_dir=out / "tree-s3", train_dir=f"s3://{BUCKET}/train", **common),
    }
    if args.skip_tar_in_s3:
        del configs["tar_s3_to_local"]
    return configs


def measure(args: argparse.Namespace, train: Path, tar: Path) -> dict:
    """Every path's build times and request counts, against a moto server of this run's own."""
    log_path = args.work_dir / "moto.log"
    with moto_server(log_path) as endpoint:
        use_endpoint(endpoint)
        import s3fs  # after the endpoint is set: fsspec reads FSSPEC_S3_* when first imported

        fs, log = s3fs.S3FileSystem(), RequestLog(log_path)
        fs.mkdir(BUCKET)
        setup = {"upload_tar": timed(lambda: fs.put_file(str(tar), f"{BUCKET}/{tar.name}")),
                 "upload_tree": timed(lambda: fs.put(str(train), f"{BUCKET}/train", recursive=True))}
        one_image = next(path for path in fs.find(f"{BUCKET}/train") if path.endswith(".JPEG"))
        ranged_get = {"tar": ranged_get_ms(fs, f"{BUCKET}/{tar.name}"), "one_image": ranged_get_ms(fs, one_image)}
        configs = path_configs(args, train, tar)
        for config in configs.values():
            clear_output(config, fs, keep_index=False)
        first_tar, seconds, requests = {}, {name: [] for name in configs}, {}
        for name in [name for name in configs if name.startswith("tar_")]:  # each indexes its tar's headers
            log.since_last()
            first_tar[name] = timed_build(configs[name], args.images)
            requests[f"{name}_first_with_index_scan"] = log.since_last()
        for _ in range(args.repeats):  # interleaved, so every path sees the same cache and machine state
            for name, config in configs.items():
                clear_output(config, fs)
                log.since_last()
                seconds[name].append(timed_build(config, args.images))
                requests[name] = log.since_last()
    return {"seconds": seconds, "first_tar": first_tar, "requests": requests, "setup": setup,
            "ranged_get": ranged_get}


def report(args: argparse.Namespace, measured: dict) -> dict:
    """The JSON report: best-of rates, their bucket/local ratios, and what explains them."""
    rates = {name: args.images / min(times) for name, times in measured["seconds"].items()}
    return {
        "images": args.images, "workers": args.workers, "shards": args.shards,
        "mode": "resize" if args.resize else "copy",
        "images_per_s": {name: round(rate, 1) for name, rate in rates.items()},
        "bucket_over_local": {name: round(rates[bucket] / rates[local], 3)
                              for name, (bucket, local) in RATIOS.items() if bucket in rates},
        "first_tar_build_seconds_with_index_scan": {name: round(s, 2) for name, s in measured["first_tar"].items()},
        "requests_per_build": measured["requests"],
        "moto_ms_per_64KiB_ranged_get": {name: round(ms, 1) for name, ms in measured["ranged_get"].items()},
        "setup_seconds": {name: round(s, 2) for name, s in measured["setup"].items()},
        "seconds": {name: [round(s, 2) for s in times] for name, times in measured["seconds"].items()},
        "moto_version": version("moto"),
        "note": NOTE,
    }


def main() -> None:
    parser = build_parser(__doc__.splitlines()[0], "bench-buckets")
    parser.add_argument("--skip_tar_in_s3", action="store_true",
                        help="leave out the train tar in s3, the path bound by moto (most of the run's time)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the server is stopped on a kill too
    args.work_dir.mkdir(parents=True, exist_ok=True)
    train = make_corpus(args.work_dir / "corpus", args.images)
    tar = pack_train_tar(train, args.work_dir)
    print(json.dumps(report(args, measure(args, train, tar))))


if __name__ == "__main__":
    main()
