"""A real HTTP server on 127.0.0.1 for the download tests: Basic auth, Range requests, injected faults."""

from __future__ import annotations

import base64
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTML_PAGE = b"<!DOCTYPE html>\n<html><head><title>Login</title></head><body>Please log in.</body></html>\n"
RANGE = re.compile(r"bytes=(\d+)-")

# Faults, per file name:
CUT_ONCE = "cut_once"  # the first GET sends full headers, half the body, then drops the connection
HTML = "html"  # a login page (text/html, 200) instead of the file
HTML_AS_TAR = "html_as_tar"  # the same page, labelled application/x-tar
CORRUPT = "corrupt"  # the right length, one byte flipped
BUSY_ONCE = "busy_once"  # the first GET is answered 503 with Retry-After: 1
BUSY = "busy"  # every GET is answered so
FORBIDDEN = "forbidden"  # every GET is answered 403 (a login that may not download this file)
NO_LENGTH = "no_length"  # a HEAD is answered without Content-Length (GETs are served as usual)
# Otherwise a HEAD request gets the file's true headers (no fault); it is not counted by `gets`.


@dataclass
class Request:
    path: str
    range: str | None
    authorized: bool
    method: str = "GET"
    at: float = 0.0  # time.monotonic() when it arrived
    client_port: int = 0  # the same for requests that share a kept-alive connection


@dataclass
class ArchiveServer:
    files: dict[str, bytes]
    user: str
    secret: str
    prefix: str = "/data/ILSVRC/2012"
    faults: dict[str, str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{self.prefix}"

    def gets(self, name: str) -> list[Request]:
        """The authorized GET requests for one file, in order."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/" + name) and r.authorized and r.method == "GET"]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.secret}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                authorized = self.headers.get("Authorization") == expected
                with server._lock:
                    server.requests.append(Request(self.path, self.headers.get("Range"), authorized, self.command,
                                                   time.monotonic(), self.client_address[1]))
                if not authorized:
                    return self._send(401, b"login needed\n", {"WWW-Authenticate": 'Basic realm="ImageNet"'})
                name = self.path.rsplit("/", 1)[-1]
                data = server.files.get(name) if self.path.startswith(server.prefix + "/") else None
                if data is None:
                    return self._send(404, b"not found\n")
                if self.command == "HEAD" and server.faults.get(name) == NO_LENGTH:
                    return self._send(200, b"", {"Content-Type": "application/x-tar"}, length=False)
                with server._lock:
                    fault = server.faults.get(name) if self.command == "GET" else None
                    if fault in (CUT_ONCE, BUSY_ONCE):
                        del server.faults[name]
                if fault in (BUSY_ONCE, BUSY):
                    return self._send(503, b"busy\n", {"Retry-After": "1"})
                if fault == FORBIDDEN:
                    return self._send(403, b"forbidden\n")
                if fault in (HTML, HTML_AS_TAR):
                    kind = "text/html; charset=utf-8" if fault == HTML else "application/x-tar"
                    return self._send(200, HTML_PAGE, {"Content-Type": kind})
                if fault == CORRUPT:
                    data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
                match = RANGE.fullmatch(self.headers.get("Range", ""))
                start = int(match.group(1)) if match else 0
                if start >= len(data) and match:
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                headers = {"Content-Type": "application/x-tar"}
                if match:
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                body = data[start:]
                if fault == CUT_ONCE:
                    self._send(206 if match else 200, body, headers, cut_at=len(body) // 2)
                else:
                    self._send(206 if match else 200, body, headers)

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, cut_at: int | None = None,
                      length: bool = True) -> None:
                self.send_response(status)
                for key, value in {"Content-Type": "text/plain", **(headers or {})}.items():
                    self.send_header(key, value)
                if length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if cut_at is None:
                    self.wfile.write(body)
                    return
                self.wfile.write(body[:cut_at])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

        return Handler
