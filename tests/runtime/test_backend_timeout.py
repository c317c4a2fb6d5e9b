"""A backend that hangs: backend_response_timeout (beyond Perl, which waits
forever) gives the client a 504 when nothing was sent yet, or closes it when
the reply had started; either way the next request is served."""

from __future__ import annotations

import socket
import threading
import time

from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import pool, proxy_service
from tests.support.ports import free_ports
from tests.support.rawhttp import request


class _Hanging:
    """Reads a request, optionally sends ``prefix``, then says nothing more."""

    def __init__(self, prefix: bytes = b"") -> None:
        self.prefix = prefix
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            try:
                conn.recv(65536)
                if self.prefix:
                    conn.sendall(self.prefix)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def _conf(hang: int, good: Backend, slow: int, fine: int) -> str:
    return (pool("hang", [hang]) + pool("good", [good])
            + proxy_service("slow", slow, "hang", extra=["SET backend_response_timeout = 1"])
            + proxy_service("fine", fine, "good"))


def test_hanging_backend_gets_504_in_time() -> None:
    hang = _Hanging()
    slow, fine = free_ports(2)
    try:
        with Backend("good") as good:
            with PyPerlbal(_conf(hang.port, good, slow, fine)):
                start = time.monotonic()
                got = request(slow, "GET", "/x", [("Host", "x")], timeout=10)
                took = time.monotonic() - start
                assert got.status == 504, got
                assert 0.8 < took < 5, took
                assert request(fine, "GET", "/y", [("Host", "x")]).status == 200
    finally:
        hang.close()


def test_backend_hanging_mid_body_closes_the_client() -> None:
    hang = _Hanging(b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
    slow, fine = free_ports(2)
    try:
        with Backend("good") as good:
            with PyPerlbal(_conf(hang.port, good, slow, fine)):
                with socket.create_connection(("127.0.0.1", slow), timeout=10) as sock:
                    sock.sendall(b"GET /x HTTP/1.0\r\nHost: x\r\n\r\n")
                    data = b""
                    start = time.monotonic()
                    while True:
                        chunk = sock.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    took = time.monotonic() - start
                assert data.startswith(b"HTTP/1.0 200") and data.endswith(b"only part")
                assert took < 6, took  # closed: the body will never be complete
                assert request(fine, "GET", "/y", [("Host", "x")]).status == 200
    finally:
        hang.close()
