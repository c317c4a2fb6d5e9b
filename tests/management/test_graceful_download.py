"""Graceful SIGTERM lets a proxied download finish whole (#15 defect 6).

A reply handed to a slow client's transport is still being written when its
handler returns; the server used to end its event loop right then and drop
the tail (the DISABLE/ENABLE of the report only changed the timing).  Here
the client reads at 4 MB/s, and its last TAIL bytes slowly (320 KB/s): the
handler is done while tens or hundreds of KB still wait in the server's
transport buffer (the kernel's are kept small with client_sndbuf_size and
SO_RCVBUF), which the server must send before it exits.
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from tests.support.pyserver import PyPerlbal
from tests.support.configs import proxy_config
from tests.support.ports import LOOPBACK, free_ports
from tests.support.threadserver import ThreadedServer

SIZE = 12 * 1024 * 1024
RATE = 4 * 1024 * 1024  # bytes a second the client reads
TAIL = 1024 * 1024
SLOW_PIECE, SLOW_PAUSE = 16384, 0.05  # the tail: 320 KB/s
HEAD = b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"


class BigBackend(ThreadedServer):
    """Answers every request with SIZE bytes, blocking on a slow reader (no timeout)."""

    backlog = 8

    def __init__(self) -> None:
        super().__init__()
        self.address = f"{LOOPBACK}:{self.port}"

    def serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            try:
                conn.sendall(HEAD % SIZE)
                block = bytes(range(256)) * 256
                for _ in range(SIZE // len(block)):
                    conn.sendall(block)
            except OSError:
                pass


def _console(port: int, *lines: str) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        for line in lines:
            sock.sendall(line.encode() + b"\r\n")
        out = b""
        while out.count(b"\r\n") < len(lines):
            out += sock.recv(4096)
    return out


def _download(server: PyPerlbal, port: int) -> int:
    """Body bytes received; SIGTERM after 1 s; the tail read slowly."""
    assert server.proc is not None
    with socket.create_connection((LOOPBACK, port), timeout=15) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /big HTTP/1.0\r\n\r\n")
        raw = b""
        got = 0
        started = time.monotonic()
        termed = False
        while True:
            slow = got > SIZE - TAIL
            data = sock.recv(SLOW_PIECE if slow else 65536)
            if not data:
                break
            got += len(data)
            if len(raw) < 4096:
                raw += data
            elapsed = time.monotonic() - started
            if not termed and elapsed > 1.0:
                server.proc.send_signal(signal.SIGTERM)
                termed = True
            if slow:
                time.sleep(SLOW_PAUSE)
                continue
            ahead = got / RATE - elapsed
            if ahead > 0:
                time.sleep(ahead)
    assert termed
    assert raw.startswith(b"HTTP/1.0 200 OK\r\n")
    return got - (raw.index(b"\r\n\r\n") + 4)


@pytest.mark.parametrize("toggle", [True, False], ids=["disable-enable", "plain"])
def test_sigterm_lets_a_slow_download_finish(toggle: bool) -> None:
    port, mgmt = free_ports(2)
    backend = BigBackend()
    conf = proxy_config(port, [backend.address], service="px", mgmt_port=mgmt,
                        extra=["SET client_sndbuf_size = 65536"])
    try:
        with PyPerlbal(conf) as server:
            if toggle:
                assert _console(mgmt, "DISABLE px", "ENABLE px") == b"OK\r\nOK\r\n"
            assert _download(server, port) == SIZE
            assert server.proc is not None
            assert server.proc.wait(timeout=10) == 0
            _, err = server.output()
            assert "Traceback" not in err
    finally:
        backend.close()
