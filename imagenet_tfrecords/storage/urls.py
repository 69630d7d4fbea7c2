"""Where a build's files live: a local (or mounted) folder, or a folder in a bucket.

Buckets (`s3://`, `gs://` and any other fsspec URL) go through fsspec, with s3fs and gcsfs as
optional extras (`imagenet-tfrecords[buckets]`, or requirements-buckets.txt). An object store has no
rename, so an object is only ever written by one upload that the store makes visible when it is
complete: a small file in one request, a shard from a finished local copy (`put_file`: a multipart
or resumable upload that is completed at its end). A killed upload leaves no object under the name; S3's unfinished multipart
parts are aborted by the next build (`abort_unfinished_uploads`).

Errors from a store (no such bucket, no permission, bad credentials, no connection) become one
line naming the URL; the store's own message is kept, without any secret that may be in it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import UserError

URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+)://")
# The packages each store needs, for the one-line error when one is missing.
STORE_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}  # the `buckets` extra of pyproject.toml
BUCKETS_INSTALL = ('pip install "imagenet-tfrecords[buckets]"; '
                   "in a source checkout: pip install -r requirements-buckets.txt")
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS_JSON")
STORE_LOGGERS = ("botocore", "aiobotocore", "s3fs", "gcsfs", "google", "fsspec")
READ_BLOCK_BYTES = 8 << 20  # reads of a shard or tar in a bucket: few, large requests


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and URL.match(location) is not None


class Url(str):
    """A location typed as a URL (`s3://bucket/x`), kept as typed: pathlib would make it `s3:/bucket/x`."""


def location(text: str) -> Path | Url:
    """A path flag's value: a `Url` when it is one, else a Path."""
    return Url(text) if is_url(text) else Path(text)


def join(location: str | Path, name: str) -> str | Path:
    """`name` inside a folder given as a path or a URL."""
    return f"{str(location).rstrip('/')}/{name}" if is_url(location) else Path(location) / name


def local_path(location: str | Path) -> Path | None:
    """The local path of `location` (a path, or a `file://` URL); None for a bucket."""
    if not is_url(location):
        return Path(location)
    return Path(location[len("file://"):]) if location.startswith("file://") else None


def _without_secrets(text: str) -> str:
    for name in SECRET_VARIABLES:
        secret = os.environ.get(name)
        if secret:
            text = text.replace(secret, "***")
    return text


def store_problem(exc: BaseException) -> str:
    """A store's error, in words: its kind and the first line of its message, secrets removed."""
    if isinstance(exc, FileNotFoundError):
        kind = "not found: no such bucket or object"
    elif isinstance(exc, PermissionError):
        kind = "permission denied: check your credentials and the bucket's permissions"
    else:
        kind = type(exc).__name__
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return _without_secrets(f"{kind}: {detail}"[:300] if detail else kind)


@contextmanager
def store_errors(url: str, what: str) -> Iterator[None]:
    """Any failure of the store while doing `what` becomes one UserError line naming `url`."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:  # each store raises its own kinds (botocore, aiohttp, google-auth, OSError)
        raise UserError(f"{url}: cannot {what} ({store_problem(exc)}); check the URL, that the bucket exists, "
                        "and your credentials (the usual environment variables or config files of the store)") from None


def check_scheme(url: str) -> str:
    """The URL's scheme, when fsspec knows it (its package may still be missing); else one line."""
    import fsspec

    scheme = URL.match(url)["scheme"].lower()
    if scheme not in fsspec.available_protocols():
        raise UserError(f"{url}: {scheme}:// is not a storage this tool can read or write; "
                        "use a local path, s3://, gs:// or another fsspec URL")
    return scheme


def filesystem(url: str):
    """The fsspec file system and the path within it for `url`; one line when its package is missing."""
    from fsspec.core import url_to_fs  # a bucket's own import: a local build never needs it

    scheme = check_scheme(url)
    try:
        return url_to_fs(url)
    except ImportError as exc:
        if scheme not in STORE_PACKAGES:  # not one of the extra's: fsspec's message names the package
            raise UserError(f"{url}: install the fsspec package for {scheme}:// ({exc})") from None
        raise UserError(f"{url}: install {STORE_PACKAGES[scheme]} for {scheme}:// ({BUCKETS_INSTALL})") from None
    except Exception as exc:
        raise UserError(f"{url}: cannot open this storage ({store_problem(exc)})") from None


def object_stamp(info: dict) -> tuple[int, int]:
    """(size, change marker) of an object from its listing or `info`: the marker is a 63-bit hash of
    what each store changes when the object does (ETag, generation, modification time), so a stamp
    is two integers as a local file's (size, mtime) is."""
    marker = repr([str(info.get(key)) for key in ("ETag", "etag", "generation", "LastModified", "updated", "mtime",
                                                  "created")])
    return int(info.get("size") or 0), int.from_bytes(hashlib.blake2b(marker.encode(), digest_size=8).digest()) >> 1


def stamp_of(location: str | Path) -> tuple[int, int]:
    """(size, mtime in ns) of a local file by stat, or the stamp of the object at a URL (one request);
    OSError (FileNotFoundError when there is none) otherwise."""
    path = local_path(location)
    if path is not None:
        stat = os.stat(path)
        return stat.st_size, stat.st_mtime_ns
    url = str(location)
    fs, path = filesystem(url)
    try:
        with store_errors(url, "look up the object"):
            return object_stamp(fs.info(path))
    except UserError:
        if not fs.exists(path):
            raise FileNotFoundError(url) from None
        raise


def open_url(url: str, block_size: int) -> BinaryIO:
    """A seekable reader of the object at `url`, fetched in blocks of `block_size` bytes read ahead."""
    fs, path = filesystem(url)
    with store_errors(url, "open the object"):
        return fs.open(path, "rb", block_size=block_size, cache_type="readahead")
