"""Backends that answer with a digest of what they received, for end-to-end checks.

``DigestApp`` is a WSGI application: any method, the reply body is JSON with
the request's method, path, body length and sha256, and ``/bytes/N`` answers
N deterministic bytes (``payload(N)``) so downloads can be checked too (one
``Range: bytes=A-B`` is answered 206, as a real application server would).
``serve_wsgiref`` runs it on Python's own ``wsgiref`` server (HTTP/1.0,
close-delimited replies) in a thread; other tests run the same app under
gunicorn and uvicorn.  ``BareLFBackend`` writes heads with bare LF line ends,
as old Perl/CGI stacks do.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from types import TracebackType
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tests.support.ports import LOOPBACK


def payload(size: int) -> bytes:
    """``size`` deterministic, incompressible-looking bytes."""
    block = hashlib.sha256(b"perlbal").digest() * 64  # 2 KiB
    return (block * (size // len(block) + 1))[:size]


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a single satisfiable ``bytes=A-B`` / ``A-`` / ``-N``
    range (RFC 9110 section 14.1.2), or None for no or any other range."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first_text, _, last_text = header[6:].strip().partition("-")
    if not (first_text or last_text) or not (first_text + last_text).isdigit():
        return None
    if not first_text:
        first, last = max(0, size - int(last_text)), size - 1
    else:
        first, last = int(first_text), min(size - 1, int(last_text or size - 1))
    return (first, last) if first <= last else None


def digest_reply(method: str, path: str, body: bytes) -> bytes:
    return digest_json(method, path, len(body), hashlib.sha256(body).hexdigest())


def digest_json(method: str, path: str, length: int, sha256: str) -> bytes:
    """The reply body, for servers that hash a body as it streams in."""
    return json.dumps({"method": method, "path": path, "length": length,
                       "sha256": sha256}).encode()


StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def digest_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    if path.startswith("/bytes/"):
        data = payload(int(path.rsplit("/", 1)[1]))
        status, headers = "200 OK", [("Content-Type", "application/octet-stream")]
        wanted = byte_range(environ.get("HTTP_RANGE"), len(data))
        if wanted is not None:
            first, last = wanted
            status = "206 Partial Content"
            headers.append(("Content-Range", f"bytes {first}-{last}/{len(data)}"))
            data = data[first:last + 1]
        start_response(status, headers + [("Content-Length", str(len(data)))])
        return [data] if environ["REQUEST_METHOD"] != "HEAD" else []
    data = digest_reply(environ["REQUEST_METHOD"], path, body)
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class serve_wsgiref:
    """``with serve_wsgiref() as port:`` the digest app on wsgiref, in a thread."""

    def __init__(self) -> None:
        self.server: WSGIServer = make_server(LOOPBACK, 0, digest_app, handler_class=_Quiet)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        return self.port

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()


class BareLFBackend:
    """Answers every request with a head whose lines end in a bare LF, keeping
    the connection open (Connection: keep-alive) as Perl's HTTP::Response did;
    the body is the digest of the request body (none for HEAD)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False

    def __enter__(self) -> "BareLFBackend":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop = True
        self.sock.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:length], buf[length:]
                reply = digest_reply(method, path, body)
                conn.sendall(b"HTTP/1.0 200 OK\nContent-Type: application/json\n"
                             b"Connection: keep-alive\nContent-Length: %d\n\n" % len(reply)
                             + (b"" if method == "HEAD" else reply))  # as HTTP::Daemon
