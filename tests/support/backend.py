"""A scripted HTTP/1.1 backend for proxy tests, on 127.0.0.1 in a thread.

Every response says who served it, so tests can see connection reuse:

* ``X-Backend-Name``: the backend's name;
* ``X-Backend-Conn``: which TCP connection (1, 2, ... in accept order);
* ``X-Backend-Req``: which request on that connection (1, 2, ...).

The body is JSON echoing what arrived (method, target, version, headers in
order, body length) unless ``response_size`` asks for a fixed-size body.
``OPTIONS`` gets an empty 200, which is what Perl's ``verify_backend`` wants.
Every request is appended to ``log`` so a test can assert that a request was
never sent twice or smuggled.  Knobs may be changed while running.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Callable

from tests.support.ports import LOOPBACK


@dataclass(frozen=True)
class ReceivedRequest:
    conn: int
    req: int
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None


@dataclass
class BackendReply:
    """What a custom ``handler`` returns to override the default reply."""

    status: int = 200
    reason: str = "OK"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    close: bool = False


class Backend:
    """Context manager: ``with Backend(name="b1") as be: be.port ...``."""

    def __init__(
        self,
        name: str = "backend",
        *,
        port: int = 0,
        host: str = LOOPBACK,
        response_size: int | None = None,
        delay: float = 0.0,
        extra_headers: list[tuple[str, str]] | None = None,
        close_after_response: bool = False,
        status: int = 200,
        handler: Callable[[ReceivedRequest], BackendReply | None] | None = None,
    ) -> None:
        self.name = name
        self.response_size = response_size
        self.delay = delay
        self.extra_headers = list(extra_headers or [])
        self.close_after_response = close_after_response
        self.status = status
        self.handler = handler
        self.log: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._conn_counter = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.host = host  # another loopback address (127.0.0.2 ...) for a second node
        self._listener.bind((host, port))
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connection_count(self) -> int:
        with self._lock:
            return self._conn_counter

    def requests(self, method: str | None = None) -> list[ReceivedRequest]:
        """Snapshot of the log, optionally only one method."""
        with self._lock:
            return [r for r in self.log if method is None or r.method == method]

    def __enter__(self) -> Backend:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        thread = threading.Thread(target=self._accept_loop, name=f"backend-{self.name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._conn_counter += 1
                number = self._conn_counter
                self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn, number), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket, conn_number: int) -> None:
        conn.settimeout(0.2)
        buf = b""
        req_number = 0
        try:
            while not self._stopping.is_set():
                parsed = self._read_request(conn, buf)
                if parsed is None:
                    return
                head, body, buf = parsed
                req_number += 1
                request = self._parse_head(head, body, conn_number, req_number)
                with self._lock:
                    self.log.append(request)
                if self.delay:
                    time.sleep(self.delay)
                data, close = self._respond(request)
                conn.sendall(data)
                if close:
                    return
        except OSError:
            return
        finally:
            conn.close()

    def _recv(self, conn: socket.socket) -> bytes | None:
        while not self._stopping.is_set():
            try:
                return conn.recv(65536)
            except socket.timeout:
                continue
        return None

    def _read_request(self, conn: socket.socket, buf: bytes) -> tuple[bytes, bytes, bytes] | None:
        while b"\r\n\r\n" not in buf:
            chunk = self._recv(conn)
            if not chunk:
                return None
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lower = head.lower()
        body = b""
        if b"transfer-encoding: chunked" in lower:
            while True:
                while b"\r\n" not in buf:
                    chunk = self._recv(conn)
                    if not chunk:
                        return None
                    buf += chunk
                size_line, buf = buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(buf) < size + 2:
                    chunk = self._recv(conn)
                    if not chunk:
                        return None
                    buf += chunk
                if size == 0:
                    # skip trailers up to the blank line
                    while not buf.startswith(b"\r\n") and b"\r\n\r\n" not in buf:
                        chunk = self._recv(conn)
                        if not chunk:
                            return None
                        buf += chunk
                    buf = buf[2:] if buf.startswith(b"\r\n") else buf.split(b"\r\n\r\n", 1)[1]
                    break
                body += buf[:size]
                buf = buf[size + 2 :]
        else:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                if key.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(buf) < length:
                chunk = self._recv(conn)
                if not chunk:
                    return None
                buf += chunk
            body, buf = buf[:length], buf[length:]
        return head, body, buf

    @staticmethod
    def _parse_head(head: bytes, body: bytes, conn: int, req: int) -> ReceivedRequest:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = (lines[0].split(" ", 2) + ["", ""])[:3]
        headers = []
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers.append((key, value.strip()))
        return ReceivedRequest(conn, req, method, target, version, headers, body)

    def _respond(self, request: ReceivedRequest) -> tuple[bytes, bool]:
        reply = self.handler(request) if self.handler else None
        if reply is None:
            reply = self._default_reply(request)
        connection = (request.header("Connection") or "").lower()
        close = (
            reply.close
            or self.close_after_response
            or connection == "close"
            or (request.version == "HTTP/1.0" and connection != "keep-alive")
        )
        headers = [
            ("X-Backend-Name", self.name),
            ("X-Backend-Conn", str(request.conn)),
            ("X-Backend-Req", str(request.req)),
            *reply.headers,
            ("Content-Length", str(len(reply.body))),
        ]
        if close:
            headers.append(("Connection", "close"))
        elif request.version == "HTTP/1.0":
            headers.append(("Connection", "keep-alive"))
        head = f"HTTP/1.1 {reply.status} {reply.reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        body = b"" if request.method == "HEAD" else reply.body
        return head.encode("latin-1") + b"\r\n" + body, close

    def _default_reply(self, request: ReceivedRequest) -> BackendReply:
        if request.method == "OPTIONS":
            return BackendReply(status=200, reason="OK", headers=list(self.extra_headers))
        if self.response_size is not None:
            body = b"x" * self.response_size
            content_type = "application/octet-stream"
        else:
            echo = {
                "name": self.name,
                "conn": request.conn,
                "req": request.req,
                "method": request.method,
                "target": request.target,
                "version": request.version,
                "headers": request.headers,
                "body_length": len(request.body),
            }
            body = json.dumps(echo).encode()
            content_type = "application/json"
        reason = "OK" if self.status == 200 else "Status"
        return BackendReply(
            status=self.status,
            reason=reason,
            headers=[("Content-Type", content_type), *self.extra_headers],
            body=body,
        )
