"""A build's folder, local or in a bucket: listings with sizes, whole-object writes, uploads, deletes.

`folder(location)` gives a `LocalFolder` (writes through `atomic`) or a `Bucket` (through fsspec).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError
from .atomic import make_directory, write_atomically
from .urls import filesystem, local_path, store_errors


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
        make_directory(self.path)
        write_atomically(self.path / name, data, what)

    def remove(self, names: list[str]) -> None:
        for name in names:
            (self.path / name).unlink(missing_ok=True)


Folder = Bucket | LocalFolder


def folder(location: str | Path) -> Folder:
    """The folder at a local path, a `file://` URL or a bucket URL."""
    path = local_path(location)
    return LocalFolder(path) if path is not None else Bucket(str(location))
