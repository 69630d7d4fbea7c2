"""Where a build's files live: a local (or mounted) folder, or a folder in a bucket.

Buckets (`s3://`, `gs://` and any other fsspec URL) go through fsspec, with s3fs and gcsfs as
optional extras (requirements-buckets.txt). An object store has no rename, so an object is only
ever written by one upload that the store makes visible when it is complete: a small file in one
request, a shard from a finished local copy (`put_file`: a multipart or resumable upload that is
completed at its end). A killed upload leaves no object under the name; S3's unfinished multipart
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

from .atomic import write_atomically
from .errors import UserError

URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+)://")
# The packages each store needs, for the one-line error when one is missing.
STORE_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS_JSON")
STORE_LOGGERS = ("botocore", "aiobotocore", "s3fs", "gcsfs", "google", "fsspec")
READ_BLOCK_BYTES = 8 << 20  # reads of a shard or tar in a bucket: few, large requests


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and URL.match(location) is not None


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
    except ImportError:
        package = STORE_PACKAGES.get(scheme, f"the fsspec package for {scheme}://")
        raise UserError(f"{url}: install {package} for {scheme}:// (pip install -r requirements-buckets.txt)") from None
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


class Bucket:
    """A folder in an object store: `url` is `scheme://bucket/prefix`."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.fs, self.root = filesystem(self.url)
        self.root = self.root.rstrip("/")

    def __str__(self) -> str:
        return self.url

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}"

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def sizes(self, folder: str = "") -> dict[str, int]:
        """Name -> size of every object directly in this folder (or in `folder` inside it); {} when none."""
        where = self._path(folder) if folder else self.root
        with store_errors(self.url_of(folder) if folder else self.url, "list the bucket"):
            try:
                entries = self.fs.ls(where, detail=True, refresh=True)
            except FileNotFoundError:
                self._check_bucket()
                return {}
        return {entry["name"].rstrip("/").rsplit("/", 1)[-1]: int(entry.get("size") or 0)
                for entry in entries if entry.get("type") == "file"}

    def _check_bucket(self) -> None:
        """A missing folder is an empty one, a missing bucket an error."""
        bucket = self.root.split("/", 1)[0]
        if not self.fs.exists(bucket):
            raise FileNotFoundError(f"bucket {bucket} does not exist")

    def folders(self) -> list[str]:
        """The names of the folders (common prefixes) directly in this folder."""
        with store_errors(self.url, "list the bucket"):
            try:
                entries = self.fs.ls(self.root, detail=True, refresh=True)
            except FileNotFoundError:
                return []
        return [entry["name"].rstrip("/").rsplit("/", 1)[-1] for entry in entries if entry.get("type") == "directory"]

    def exists(self, name: str) -> bool:
        with store_errors(self.url_of(name), "look for the object"):
            return self.fs.exists(self._path(name))

    def read(self, name: str) -> bytes:
        """The object's bytes; FileNotFoundError when there is none."""
        try:
            with store_errors(self.url_of(name), "read the object"):
                return self.fs.cat_file(self._path(name))
        except UserError:
            if not self.exists(name):
                raise FileNotFoundError(self.url_of(name)) from None
            raise

    def read_many(self, names: list[str]) -> dict[str, bytes]:
        """Several objects at once (concurrent requests on stores that allow them)."""
        if not names:
            return {}
        with store_errors(self.url, "read the objects"):
            data = self.fs.cat([self._path(n) for n in names], on_error="raise")
        return {name: data[self._path(name)] for name in names}

    def write(self, name: str, data: bytes | str, what: str) -> None:
        """The object appears whole: one request."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        with store_errors(self.url_of(name), f"write {what}"):
            self.fs.pipe_file(self._path(name), data)

    def upload(self, local: Path, name: str, what: str) -> None:
        """Upload a finished local file; the object appears only once the whole upload is complete."""
        with store_errors(self.url_of(name), f"upload {what}"):
            self.fs.put_file(str(local), self._path(name))

    def remove(self, names: list[str]) -> None:
        """Delete these objects (in batches, where the store allows); those already gone are no error."""
        if not names:
            return
        with store_errors(self.url_of(names[0]), "delete objects"):
            try:
                self.fs.rm([self._path(name) for name in names])
            except FileNotFoundError:  # some stores refuse the batch when one is gone: one at a time
                for name in names:
                    if self.fs.exists(self._path(name)):
                        self.fs.rm_file(self._path(name))

    def check_writable(self) -> None:
        """Fail now, in one line, rather than after the scan: the bucket exists and takes a write."""
        probe = self._path(".write-test")
        with store_errors(self.url, "write into the bucket"):
            self.fs.pipe_file(probe, b"")
            self.fs.rm_file(probe)

    def abort_unfinished_uploads(self) -> list[str]:
        """Abort the multipart uploads left under this folder by a killed build (S3 only; a store
        whose unfinished uploads are never visible and expire by themselves, as GCS's, has none to
        abort). Returns the keys whose uploads were aborted."""
        if not hasattr(self.fs, "call_s3"):
            return []
        bucket, _, prefix = self.root.partition("/")
        aborted = []
        with store_errors(self.url, "list the unfinished uploads"):
            listing = self.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix + "/" if prefix else "")
            for upload in listing.get("Uploads", []):
                self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted.append(upload["Key"])
        return aborted


class LocalFolder:
    """A local or mounted folder, with the same reading and writing calls as `Bucket`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    def url_of(self, name: str) -> str:
        return str(self.path / name)

    def sizes(self, folder: str = "") -> dict[str, int]:
        where = self.path / folder if folder else self.path
        try:
            with os.scandir(where) as entries:
                return {e.name: e.stat().st_size for e in entries if e.is_file()}  # a link: its file's
        except FileNotFoundError:
            return {}

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()

    def write(self, name: str, data: bytes | str, what: str) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{self.path}: cannot create the directory ({exc.strerror})") from None
        write_atomically(self.path / name, data, what)

    def remove(self, names: list[str]) -> None:
        for name in names:
            (self.path / name).unlink(missing_ok=True)


Folder = Bucket | LocalFolder


def folder(location: str | Path) -> Folder:
    """The folder at a local path, a `file://` URL or a bucket URL."""
    path = local_path(location)
    return LocalFolder(path) if path is not None else Bucket(str(location))
