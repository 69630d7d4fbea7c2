"""Download one archive over HTTP(S) with requests: one session for the whole run (keep-alive, one
login), urllib3's Retry for refused connections and busy servers (it honours Retry-After), Range
resume after a connection lost mid-file, and size, MD5 and HTML checks."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.exceptions import ConnectTimeoutError, HTTPError as Urllib3Error, NameResolutionError
from urllib3.util.retry import Retry

from ..errors import UserError
from ..progress import byte_bar
from .archives import Archive, looks_like_html
from .checksums import md5_of_file
from .credentials import SECRET_ENV, USER_ENV, Credentials
from .space import ensure_free_space

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60  # per socket operation, not per file
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")
UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)")
USER_AGENT = "imagenet-tfrecords download_imagenet.py"
HEAD_UNSUPPORTED = frozenset({405, 501})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # busy answers (5xx, 429), or connections lost without a byte of progress, in a row
    first_delay: float = 1.0  # seconds; doubled after each failure in a row
    max_delay: float = 60.0
    connect_retries: int = 1  # a refused or unknown host is tried once more, then it is an error

    def delay(self, failures: int) -> float:
        return min(self.first_delay * 2 ** max(failures - 1, 0), self.max_delay)


class _Transient(Exception):
    """A connection lost before the file was complete: worth another request from the byte it stopped at."""


def _connection_problem(error: BaseException | None) -> str:
    """A refused, unreachable or unknown host in plain words."""
    cause = getattr(error, "__cause__", None)
    detail = getattr(cause, "strerror", None) or str(cause or error)
    if isinstance(error, NameResolutionError):
        return f"cannot resolve the host name ({detail})"
    return f"cannot connect ({detail})"


class _LoggedRetry(Retry):
    """urllib3's Retry (backoff, Retry-After), saying in the log why it waits before each retry."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None) -> Retry:
        retry = super().increment(method, url, response, error, _pool, _stacktrace)  # raises when used up
        name = (url or "").rsplit("/", 1)[-1]
        if response is None:
            log.warning("%s: %s; trying again", name, _connection_problem(error))
            return retry
        asked = retry.get_retry_after(response) if retry.respect_retry_after_header else None
        wait = f"waiting {asked:.0f} s as the server asks" if asked is not None else \
            f"trying again in {retry.get_backoff_time():.0f} s"
        log.warning("%s: HTTP %d; %s", name, response.status, wait)
        return retry


@dataclass
class ArchiveSource:
    """The server the archives come from: one requests session (keep-alive, the login) and its retry policy."""

    base_url: str
    session: requests.Session
    logged_in: bool
    policy: RetryPolicy

    def url(self, archive: Archive) -> str:
        return archive_url(self.base_url, archive)

    def __enter__(self) -> ArchiveSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.session.close()


def _without_login(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def open_source(base_url: str, credentials: Credentials | None, policy: RetryPolicy = RetryPolicy()) -> ArchiveSource:
    """A session for `base_url`; with credentials, Basic auth goes with every request (one login for the
    whole run, no 401 round trip per file), and requests drops it on a redirect to another host."""
    session = requests.Session()
    # identity: the bytes as the server stores them, so the MD5 and the Range offsets are the file's own.
    session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    # A no-op auth when there is no login, so that requests does not send a ~/.netrc password by itself.
    session.auth = (credentials.user, credentials.secret) if credentials else _without_login
    retry = _LoggedRetry(total=None, connect=policy.connect_retries, read=0, other=0, status=policy.attempts - 1,
                         status_forcelist=RETRYABLE_STATUS, backoff_factor=policy.first_delay,
                         backoff_max=policy.max_delay, raise_on_status=False)
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return ArchiveSource(base_url, session, credentials is not None, policy)


def check_base_url(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--base_url {base_url!r}: expected an http:// or https:// URL")
    if parts.username or parts.password:
        raise UserError("--base_url must not hold a user name or key; use IMAGENET_USER/IMAGENET_ACCESS_KEY or ~/.netrc")


def archive_url(base_url: str, archive: Archive) -> str:
    return f"{base_url.rstrip('/')}/{archive.name}"


def _kept(part: Path | None) -> str:
    """What a failed download leaves to resume, as the end of its error line."""
    if part is not None and part.is_file() and part.stat().st_size:
        return f"; {part.name} is kept and a re-run resumes it"
    return ""


def _status_failure(url: str, response: requests.Response, source: ArchiveSource, part: Path | None) -> UserError:
    status, reason = response.status_code, response.reason
    if status in (401, 403):
        if source.logged_in:
            return UserError(f"{url}: wrong user ID or access key (HTTP {status}); "
                             f"check --user/{USER_ENV} and {SECRET_ENV}/~/.netrc")
        return UserError(f"{url}: the server wants a user ID and access key (HTTP {status}); "
                         f"pass --user or set {USER_ENV}")
    if status in RETRYABLE_STATUS:
        return UserError(f"{url}: HTTP {status} {reason} {source.policy.attempts} times in a row; the server is "
                         f"busy or down, run again later{_kept(part)}")
    if status == 404:
        return UserError(f"{url}: not found (HTTP 404); check --base_url")
    return UserError(f"{url}: HTTP {status} {reason}")


def _request(source: ArchiveSource, method: str, url: str, headers: dict[str, str], part: Path | None,
             passes: frozenset[int] = frozenset()) -> requests.Response:
    """One request, retried by urllib3 as the policy says; an answer or failure that another try will not
    fix is a UserError (a refused or unknown host after one retry), a connection lost is `_Transient`.
    A GET's body is left to stream; a HEAD's (empty) one is read, so its connection is kept alive."""
    try:
        response = source.session.request(method, url, headers=headers, stream=method == "GET",
                                          timeout=TIMEOUT_SECONDS)
    except requests.exceptions.SSLError as error:
        raise UserError(f"{url}: TLS failed ({error}); check --base_url") from None
    except requests.exceptions.ConnectionError as error:
        reason = getattr(error.args[0], "reason", None) if error.args else None
        if isinstance(reason, ConnectTimeoutError):  # refused, unreachable, unknown name, no answer
            raise UserError(f"{url}: {_connection_problem(reason)}; check --base_url, or get the archives "
                            f"another way and pass --from_dir DIR{_kept(part)}") from None
        raise _Transient(str(reason or error)) from None
    except (requests.exceptions.RequestException, Urllib3Error) as error:  # urllib3's: a bad Retry-After, say
        raise _Transient(str(error)) from None
    if response.ok or response.status_code in passes:
        return response
    response.close()
    raise _status_failure(url, response, source, part)


def _html_page(url: str, archive: Archive) -> UserError:
    return UserError(f"{url}: the server sent an HTML page, not {archive.name}; check --base_url and your login")


def remote_size(source: ArchiveSource, archive: Archive) -> int | None:
    """The archive's length as the server states it (HEAD), None when it does not say; a bad URL or
    login fails here, before anything is asked or written."""
    url = source.url(archive)
    with _request(source, "HEAD", url, {}, None, HEAD_UNSUPPORTED) as response:
        if response.status_code in HEAD_UNSUPPORTED:
            return None
        if "text/html" in response.headers.get("Content-Type", ""):
            raise _html_page(url, archive)
        length = response.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else None


class _Transfer:
    """The state of one download: bytes in the `.part` file, their running MD5, the file's total length."""

    def __init__(self, source: ArchiveSource, archive: Archive, part: Path) -> None:
        self.source, self.url, self.archive, self.part = source, source.url(archive), archive, part
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
        with _request(self.source, "GET", self.url, headers, self.part, frozenset({416})) as response:
            if response.status_code == 416:
                return self._unsatisfiable(response, out, bar)
            self._accept(response, out, bar)
            self._copy(response, out, bar)

    def _unsatisfiable(self, response: requests.Response, out: BinaryIO, bar: tqdm) -> None:
        match = UNSATISFIED_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == self.offset:
            self.total, self.done = self.offset, True  # the part file was already complete
            return
        log.warning("%s: the partial download is longer than the file on the server; starting over", self.archive.name)
        self.restart(out, bar)

    def _accept(self, response: requests.Response, out: BinaryIO, bar: tqdm) -> None:
        """Check the headers: range, length, type, free space."""
        if "text/html" in response.headers.get("Content-Type", ""):
            raise _html_page(self.url, self.archive)
        if response.status_code == 206:
            match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != self.offset:
                raise UserError(f"{self.url}: the server resumed at the wrong byte; delete {self.part} and run again")
            self.total = None if match.group(2) == "*" else int(match.group(2))
        else:
            if self.offset:
                log.warning("%s: the server cannot resume; starting over", self.archive.name)
                self.restart(out, bar)
            length = response.headers.get("Content-Length", "")
            self.total = int(length) if length.isdigit() else None
        if self.archive.size is not None and self.total is not None and self.total != self.archive.size:
            raise UserError(f"{self.url}: the server's file is {self.total} bytes, {self.archive.name} is "
                            f"{self.archive.size}; the mirror serves a different file, check --base_url")
        expected = self.total or self.archive.size
        if expected:
            bar.total = expected
            bar.refresh()
            ensure_free_space(self.part.parent, expected - self.offset, f"download {self.archive.name}")

    def _copy(self, response: requests.Response, out: BinaryIO, bar: tqdm) -> None:
        try:
            # The raw stream, undecoded: a server that labels a .tar.gz Content-Encoding: gzip must not get it unpacked.
            for chunk in response.raw.stream(CHUNK_BYTES, decode_content=False):
                if self.offset == 0 and looks_like_html(chunk[:512]):
                    raise _html_page(self.url, self.archive)
                out.write(chunk)
                self.digest.update(chunk)
                self.offset += len(chunk)
                bar.update(len(chunk))
        except (Urllib3Error, OSError) as error:
            raise _Transient(f"connection lost ({error})") from None
        finally:
            out.flush()
        if self.total is None:
            self.total = self.offset  # no length given: the end of the body is the end of the file
        if self.offset < self.total:
            raise _Transient(f"connection closed at byte {self.offset} of {self.total}")
        self.done = True


def download(source: ArchiveSource, archive: Archive, dest: Path) -> None:
    """Download `archive` to `dest` through `dest.part`, resuming it; `dest` appears only with the right MD5."""
    url, policy = source.url(archive), source.policy
    part = dest.with_name(dest.name + ".part")
    transfer = _Transfer(source, archive, part)
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
                                        f"run again later{_kept(part)}") from None
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
