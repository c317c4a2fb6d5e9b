"""Raw-socket HTTP/1.x client helpers for tests that must control every byte.

Nothing here normalises what the server sent: headers keep their case and
order, and ``RawResponse.raw`` holds the exact bytes of the response.  A body
is delimited the way RFC 9112 section 6.3 says: no body for HEAD, 1xx, 204 and
304; chunked transfer coding; Content-Length; otherwise read until close.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from types import TracebackType

from tests.support.ports import LOOPBACK

DEFAULT_TIMEOUT = 5.0


class IncompleteResponse(Exception):
    """The peer closed (or timed out) before a whole response arrived."""

    def __init__(self, message: str, partial: bytes) -> None:
        super().__init__(f"{message}; got {len(partial)} bytes: {partial[:200]!r}")
        self.partial = partial


@dataclass
class RawResponse:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes = field(repr=False)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [value for key, value in self.headers if key.lower() == lname]


class _Reader:
    """Buffered reads from a socket, remembering every byte consumed."""

    def __init__(self, sock: socket.socket, buffered: bytes = b"") -> None:
        self.sock = sock
        self.buf = buffered
        self.consumed = b""
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise IncompleteResponse("timed out", self.consumed + self.buf) from None
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def until(self, delimiter: bytes) -> bytes:
        while delimiter not in self.buf:
            if not self._fill():
                raise IncompleteResponse(f"closed before {delimiter!r}", self.consumed + self.buf)
        data, self.buf = self.buf.split(delimiter, 1)
        self.consumed += data + delimiter
        return data

    def exactly(self, count: int) -> bytes:
        while len(self.buf) < count:
            if not self._fill():
                raise IncompleteResponse(f"closed before {count} body bytes", self.consumed + self.buf)
        data, self.buf = self.buf[:count], self.buf[count:]
        self.consumed += data
        return data

    def to_close(self) -> bytes:
        while self._fill():
            pass
        data, self.buf = self.buf, b""
        self.consumed += data
        return data


def _read_response(reader: _Reader, request_method: str) -> RawResponse:
    head = reader.until(b"\r\n\r\n").decode("latin-1")
    status_line, *header_lines = head.split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise IncompleteResponse(f"bad status line {status_line!r}", reader.consumed)
    version, status = parts[0], int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers: list[tuple[str, str]] = []
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    lookup = {k.lower(): v for k, v in reversed(headers)}

    if request_method.upper() == "HEAD" or status < 200 or status in (204, 304):
        body = b""
    elif "chunked" in lookup.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size_line = reader.until(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while reader.until(b"\r\n"):  # trailers end with an empty line
                    pass
                break
            body += reader.exactly(size)
            reader.until(b"\r\n")
    elif "content-length" in lookup:
        body = reader.exactly(int(lookup["content-length"]))
    else:
        body = reader.to_close()
    raw = reader.consumed
    reader.consumed = b""
    return RawResponse(version, status, reason, headers, body, raw)


def build_request(
    method: str = "GET",
    path: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
) -> bytes:
    """Bytes of a request.  Host is added when absent; Content-Length when a body is given."""
    headers = list(headers or [])
    names = {k.lower() for k, _ in headers}
    if "host" not in names and version == "HTTP/1.1":
        headers.insert(0, ("Host", "localhost"))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("latin-1") + b"\r\n" + body


def send_raw(port: int, data: bytes, *, timeout: float = DEFAULT_TIMEOUT, host: str = LOOPBACK) -> bytes:
    """Send ``data``, half-close, and return every byte until the server closes."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return _Reader(sock).to_close()


def request(
    port: int,
    method: str = "GET",
    path: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    timeout: float = DEFAULT_TIMEOUT,
    host: str = LOOPBACK,
) -> RawResponse:
    """One request on a fresh connection; returns the parsed response."""
    with HTTPConnection(port, timeout=timeout, host=host) as conn:
        return conn.request(method, path, headers, body)


class HTTPConnection:
    """One TCP connection for keep-alive sequences: send raw bytes or built
    requests and read responses one at a time, in order."""

    def __init__(self, port: int, *, timeout: float = DEFAULT_TIMEOUT, host: str = LOOPBACK) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._reader = _Reader(self.sock)

    def __enter__(self) -> HTTPConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_response(self, request_method: str = "GET") -> RawResponse:
        return _read_response(self._reader, request_method)

    def request(
        self,
        method: str = "GET",
        path: str = "/",
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = "HTTP/1.1",
    ) -> RawResponse:
        self.send(build_request(method, path, headers, body, version))
        return self.read_response(method)

    def pipeline(self, requests: list[tuple[str, bytes]]) -> list[RawResponse]:
        """Send all (method, raw request bytes) at once, then read one response each."""
        self.send(b"".join(data for _, data in requests))
        return [self.read_response(method) for method, _ in requests]

    def is_closed_by_peer(self, wait: float = 0.5) -> bool:
        """True if the server has closed its side (EOF within ``wait`` seconds)."""
        if self._reader.buf:
            return False
        old = self.sock.gettimeout()
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(1, socket.MSG_PEEK)
            return chunk == b""
        except socket.timeout:
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(old)
