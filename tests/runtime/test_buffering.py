"""Response buffering (``buffer_size``), with a control.

A backend sends an 8 MiB reply and records when its ``sendall`` returned; the
client reads at ~256 KB/s.  With ``buffer_size = 16m`` the proxy reads the
whole reply ahead of the client, so the backend is done at once; with
``buffer_size = 64k`` the backend is still blocked seconds later.

The control's reply is larger than every kernel buffer on the way could hold
(the proxy's receive buffer from the backend autotunes up to tcp_rmem's
maximum, 32 MiB here, and grew enough on a loaded machine to take all 8 MiB,
so the control "failed" with the proxy buffering nothing itself): only a proxy
that reads ahead of its client lets that backend finish.
"""

from __future__ import annotations

import socket
import threading
import time

from tests.support.configs import proxy_config
from tests.support.pyserver import ANY_PORT, PyPerlbal
from tests.support.ports import LOOPBACK

SIZE = 8 * 1024 * 1024


def _kernel_max(name: str) -> int:
    """The largest buffer TCP autotuning may give a socket (tcp_rmem / tcp_wmem)."""
    with open(f"/proc/sys/net/ipv4/{name}") as fh:
        return int(fh.read().split()[2])


def _unbufferable_size() -> int:
    """More than the kernel can hold between backend and client, plus 8 MiB."""
    return _kernel_max("tcp_rmem") + 2 * _kernel_max("tcp_wmem") + SIZE


class BigBackend:
    """Answers every request with SIZE bytes; ``done_at`` is when sendall returned."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self.started_at: float | None = None
        self.done_at: float | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            # a small send buffer so the kernel cannot hide the proxy's back-pressure
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            self.started_at = time.monotonic()
            try:
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % self.size
                             + b"z" * self.size)
            except OSError:
                return
            self.done_at = time.monotonic()

    def close(self) -> None:
        self.sock.close()
        self._thread.join(timeout=5)


def _run(buffer_size: str, watch_seconds: float,
         size: int = SIZE) -> tuple[float | None, int]:
    """Start a proxy, read slowly for ``watch_seconds``; (backend finish delay, bytes read)."""
    backend = BigBackend(size)
    conf = proxy_config(ANY_PORT, [backend.port], pool="big",
                        extra=[f"SET buffer_size = {buffer_size}"])
    try:
        with PyPerlbal(conf) as server:
            port = server.port("proxy")
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
            client.connect((LOOPBACK, port))
            with client:
                client.sendall(b"GET /big HTTP/1.0\r\n\r\n")
                got = 0
                start = time.monotonic()
                while time.monotonic() - start < watch_seconds:
                    got += len(client.recv(16384))
                    time.sleep(16384 / (256 * 1024))  # ~256 KB/s
            began = backend.started_at
            delay = None if backend.done_at is None or began is None else backend.done_at - began
            return delay, got
    finally:
        backend.close()


def test_big_buffer_releases_backend_while_client_still_reads() -> None:
    delay, got = _run("16m", 2.0)
    assert delay is not None and delay < 1.0, delay
    assert got < SIZE  # the client was still reading


def test_small_buffer_holds_backend_control() -> None:
    delay, got = _run("64k", 3.0, _unbufferable_size())
    assert delay is None, f"backend finished after {delay}s with only {got} bytes read by the client"
