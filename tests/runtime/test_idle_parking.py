"""Idle keep-alive clients are parked without a task between requests: they
are woken by their next request, closed after persist_client_idle_timeout,
and closed at shutdown."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.support.pyserver import PyPerlbal
from tests.support.ports import free_port
from tests.support.rawhttp import HTTPConnection


def config(port: int, docroot: Path, timeout: int) -> str:
    return f"""
CREATE SERVICE web
  SET role = web_server
  SET listen = 127.0.0.1:{port}
  SET docroot = {docroot}
  SET persist_client = on
  SET persist_client_idle_timeout = {timeout}
ENABLE web
"""


def test_parked_client_is_woken_and_later_timed_out(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    port = free_port()
    with PyPerlbal(config(port, tmp_path, 2)):
        with HTTPConnection(port) as conn:
            for _ in range(3):  # each wait parks the connection; each request wakes it
                got = conn.request("GET", "/a.txt", [("Host", "x")])
                assert got.status == 200 and got.body == b"a\n"
                time.sleep(0.5)
            start = time.monotonic()
            assert conn.is_closed_by_peer(wait=5.0)
            idle = time.monotonic() - start
            assert 0.8 < idle < 4.5, idle  # 2 s timeout, swept once a second


def test_parked_client_sending_half_a_request_is_served(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    port = free_port()
    with PyPerlbal(config(port, tmp_path, 30)):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            first = sock.recv(4096)
            assert first.startswith(b"HTTP/1.0 200")
            time.sleep(0.3)  # parked
            sock.sendall(b"GET /a.txt HTTP/1.1\r\n")
            time.sleep(0.3)
            sock.sendall(b"Host: x\r\n\r\n")
            second = sock.recv(4096)
            assert second.startswith(b"HTTP/1.0 200") and second.endswith(b"a\n")


def test_shutdown_closes_parked_clients(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    port = free_port()
    server = PyPerlbal(config(port, tmp_path, 30))
    with server:
        conns = [HTTPConnection(port) for _ in range(20)]
        for conn in conns:
            assert conn.request("GET", "/a.txt", [("Host", "x")]).status == 200
        server.stop()  # SIGTERM: graceful, and idle clients have nothing in flight
        assert server.proc is not None and server.proc.returncode == 0
        for conn in conns:
            assert conn.is_closed_by_peer(wait=2.0)
            conn.close()
