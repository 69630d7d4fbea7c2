"""Download one archive over HTTP(S): login as the server asks, resume with Range, retry, check size and MD5."""

from __future__ import annotations

import hashlib
import logging
import re
import ssl
import time
from dataclasses import dataclass
from http.client import HTTPException, HTTPResponse
from http.cookiejar import CookieJar
from pathlib import Path
from typing import BinaryIO
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import (HTTPBasicAuthHandler, HTTPCookieProcessor, HTTPPasswordMgrWithDefaultRealm,
                            OpenerDirector, Request, build_opener)

from tqdm import tqdm

from ..errors import UserError
from .archives import Archive, looks_like_html
from .checksums import md5_of_file
from .credentials import SECRET_ENV, USER_ENV, Credentials
from .progress import byte_bar
from .space import ensure_free_space

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60  # per socket operation, not per file
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")
UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)")
USER_AGENT = "imagenet-tfrecords download_imagenet.py"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # failures in a row, without a byte of progress, before giving up
    first_delay: float = 1.0  # seconds; doubled after each failure in a row
    max_delay: float = 60.0

    def delay(self, failures: int) -> float:
        return min(self.first_delay * 2 ** max(failures - 1, 0), self.max_delay)


class _Transient(Exception):
    """A failure worth retrying: the network, a 5xx, a connection closed early."""


def check_base_url(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--base_url {base_url!r}: expected an http:// or https:// URL")
    if parts.username or parts.password:
        raise UserError("--base_url must not hold a user name or key; use IMAGENET_USER/IMAGENET_ACCESS_KEY or ~/.netrc")


def archive_url(base_url: str, archive: Archive) -> str:
    return f"{base_url.rstrip('/')}/{archive.name}"


def make_opener(base_url: str, credentials: Credentials | None) -> OpenerDirector:
    """An opener that answers a Basic-auth challenge under `base_url` and keeps any session cookie."""
    handlers: list = [HTTPCookieProcessor(CookieJar())]
    if credentials is not None:
        passwords = HTTPPasswordMgrWithDefaultRealm()
        passwords.add_password(None, base_url, credentials.user, credentials.secret)
        handlers.append(HTTPBasicAuthHandler(passwords))
    opener = build_opener(*handlers)
    opener.addheaders = [("User-Agent", USER_AGENT)]
    return opener


def _http_failure(url: str, error: HTTPError, logged_in: bool) -> Exception:
    if error.code in (401, 403):
        if logged_in:
            return UserError(f"{url}: wrong user ID or access key (HTTP {error.code}); "
                             f"check --user/{USER_ENV} and {SECRET_ENV}/~/.netrc")
        return UserError(f"{url}: the server wants a user ID and access key (HTTP {error.code}); "
                         f"pass --user or set {USER_ENV}")
    if error.code in RETRYABLE_STATUS:
        return _Transient(f"HTTP {error.code} {error.reason}")
    if error.code == 404:
        return UserError(f"{url}: not found (HTTP 404); check --base_url")
    return UserError(f"{url}: HTTP {error.code} {error.reason}")


class _Transfer:
    """The state of one download: bytes in the `.part` file, their running MD5, the file's total length."""

    def __init__(self, url: str, archive: Archive, part: Path, opener: OpenerDirector, logged_in: bool) -> None:
        self.url, self.archive, self.part, self.opener, self.logged_in = url, archive, part, opener, logged_in
        self.offset = part.stat().st_size if part.exists() else 0
        self.digest = md5_of_file(part) if self.offset else hashlib.md5()
        self.total: int | None = None
        self.done = False

    def restart(self, out: BinaryIO, bar: tqdm) -> None:
        out.truncate(0)
        self.offset, self.digest = 0, hashlib.md5()
        bar.reset()

    def step(self, out: BinaryIO, bar: tqdm) -> None:
        """One request: resume from `offset`, copy the body; `_Transient` when it should be tried again."""
        headers = {"Range": f"bytes={self.offset}-"} if self.offset else {}
        try:
            response = self.opener.open(Request(self.url, headers=headers), timeout=TIMEOUT_SECONDS)
        except HTTPError as error:
            if error.code == 416:
                return self._unsatisfiable(error, out, bar)
            raise _http_failure(self.url, error, self.logged_in) from None
        except URLError as error:
            if isinstance(error.reason, ssl.SSLError):
                raise UserError(f"{self.url}: TLS failed ({error.reason}); check --base_url") from None
            raise _Transient(str(error.reason)) from None
        except ValueError as error:  # urllib: a login scheme other than Basic
            raise UserError(f"{self.url}: {error}; download the archives in a browser and use --from_dir") from None
        except (OSError, HTTPException) as error:
            raise _Transient(repr(error)) from None
        with response:
            self._accept(response, out, bar)
            self._copy(response, out, bar)

    def _unsatisfiable(self, error: HTTPError, out: BinaryIO, bar: tqdm) -> None:
        match = UNSATISFIED_RANGE.fullmatch(error.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == self.offset:
            self.total, self.done = self.offset, True  # the part file was already complete
            return
        log.warning("%s: the partial download is longer than the file on the server; starting over", self.archive.name)
        self.restart(out, bar)

    def _accept(self, response: HTTPResponse, out: BinaryIO, bar: tqdm) -> None:
        """Check the headers: range, length, type, free space."""
        if "text/html" in response.headers.get("Content-Type", ""):
            raise UserError(f"{self.url}: the server sent an HTML page, not {self.archive.name}; "
                            "check --base_url and your login")
        if response.status == 206:
            match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != self.offset:
                raise UserError(f"{self.url}: the server resumed at the wrong byte; delete {self.part} and run again")
            self.total = None if match.group(2) == "*" else int(match.group(2))
        else:
            if self.offset:
                log.warning("%s: the server cannot resume; starting over", self.archive.name)
                self.restart(out, bar)
            length = response.headers.get("Content-Length")
            self.total = int(length) if length and length.isdigit() else None
        if self.archive.size is not None and self.total is not None and self.total != self.archive.size:
            raise UserError(f"{self.url}: the server's file is {self.total} bytes, {self.archive.name} is "
                            f"{self.archive.size}; the mirror serves a different file, check --base_url")
        expected = self.total or self.archive.size
        if expected:
            bar.total = expected
            bar.refresh()
            ensure_free_space(self.part.parent, expected - self.offset, f"download {self.archive.name}")

    def _copy(self, response: HTTPResponse, out: BinaryIO, bar: tqdm) -> None:
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except (OSError, HTTPException) as error:
                raise _Transient(f"connection lost ({error!r})") from None
            if not chunk:
                break
            if self.offset == 0 and looks_like_html(chunk[:512]):
                raise UserError(f"{self.url}: the server sent an HTML page, not {self.archive.name}; "
                                "check --base_url and your login")
            out.write(chunk)
            self.digest.update(chunk)
            self.offset += len(chunk)
            bar.update(len(chunk))
        out.flush()
        if self.total is None:
            self.total = self.offset  # no length given: the end of the body is the end of the file
        if self.offset < self.total:
            raise _Transient(f"connection closed at byte {self.offset} of {self.total}")
        self.done = True


def download(base_url: str, archive: Archive, dest: Path, credentials: Credentials | None,
             policy: RetryPolicy = RetryPolicy()) -> None:
    """Download `archive` to `dest` through `dest.part`, resuming it; `dest` appears only with the right MD5."""
    url = archive_url(base_url, archive)
    part = dest.with_name(dest.name + ".part")
    transfer = _Transfer(url, archive, part, make_opener(base_url, credentials), credentials is not None)
    log.info("downloading %s%s", url, f" (resuming after {transfer.offset} bytes)" if transfer.offset else "")
    started, first_byte, failures = time.monotonic(), transfer.offset, 0
    try:
        with open(part, "ab") as out, byte_bar(archive.name, archive.size, transfer.offset) as bar:
            while not transfer.done:
                before = transfer.offset
                try:
                    transfer.step(out, bar)
                except _Transient as problem:
                    failures = 0 if transfer.offset > before else failures + 1
                    if failures >= policy.attempts:
                        raise UserError(f"{url}: failed {failures} times in a row ({problem}); "
                                        f"run again to resume {part.name}") from None
                    log.warning("%s: %s; retrying in %.0f s", archive.name, problem, policy.delay(failures))
                    time.sleep(policy.delay(failures))
    finally:
        if part.exists() and part.stat().st_size == 0:
            part.unlink()  # nothing worth resuming
    actual = transfer.digest.hexdigest()
    if actual != archive.md5:
        part.unlink()
        raise UserError(f"{archive.name}: downloaded file has MD5 {actual}, expected {archive.md5}; deleted it, "
                        "run again to download it anew (or check the mirror and --checksums)")
    part.replace(dest)
    seconds = max(time.monotonic() - started, 1e-9)
    log.info("%s: %d bytes, %.1f MB/s, MD5 ok", archive.name, transfer.offset, (transfer.offset - first_byte) / seconds / 1e6)
