"""Slow and partial clients, and exhaustion: slowloris heads, idle floods,
pipelined floods, the console fed 10 MB without a newline, HTTP POSTs to the
management port."""

from __future__ import annotations

import os
import socket
import time

from tests.hostile.conftest import Hostile, raw_exchange, status_of
from tests.support.rawhttp import request


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def server_pid(hostile: Hostile) -> int:
    assert hostile.server.proc is not None
    return hostile.server.proc.pid


def console(hostile: Hostile, *lines: str) -> bytes:
    with socket.create_connection(("127.0.0.1", hostile.mgmt), timeout=5) as sock:
        sock.sendall("".join(f"{line}\r\n" for line in lines).encode())
        time.sleep(0.3)
        return sock.recv(65536)


def test_slowloris_head_has_a_deadline_that_trickling_does_not_reset(hostile: Hostile) -> None:
    from tests.support.ports import free_port

    port = free_port()
    reply = console(hostile, "CREATE SERVICE slow", "SET role = web_server",
                    f"SET docroot = {hostile.docroot}", f"SET listen = 127.0.0.1:{port}",
                    "SET idle_timeout = 1", "ENABLE slow")
    assert reply.count(b"OK") == 6, reply
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    start = time.monotonic()
    closed_after = None
    try:
        sock.sendall(b"GET /ok.txt HTTP/1.1\r\nHost: example.com\r\n")
        for i in range(40):  # one header line every 0.1 s: never idle for a second
            try:
                sock.sendall(b"X-Trickle-%d: a\r\n" % i)
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - start
                break
            time.sleep(0.1)
            if i == 5:
                hostile.assert_healthy()  # others are served meanwhile
        if closed_after is None:
            sock.settimeout(2)
            try:
                data = sock.recv(4096)
            except (ConnectionResetError, socket.timeout):
                data = b""
            assert data == b"", "a trickled head was accepted after its deadline"
            closed_after = time.monotonic() - start
    finally:
        sock.close()
    assert closed_after is not None and closed_after < 4.5, closed_after
    console(hostile, "DISABLE slow")
    hostile.assert_healthy()


def test_client_abort_mid_request_and_mid_response(hostile: Hostile) -> None:
    pid = server_pid(hostile)
    hostile.assert_healthy()
    before = open_fds(pid)
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", hostile.proxy), timeout=3) as sock:
            sock.sendall(b"POST /abort HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nxx")
        with socket.create_connection(("127.0.0.1", hostile.web), timeout=3) as sock:
            sock.sendall(b"GET /ok.txt HTTP/1.0\r\n\r\n")
    hostile.assert_healthy()
    deadline = time.monotonic() + 5
    while open_fds(pid) > before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_fds(pid) <= before + 2


def test_thousands_of_idle_connections(hostile: Hostile) -> None:
    pid = server_pid(hostile)
    hostile.assert_healthy()
    before = open_fds(pid)
    idle: list[socket.socket] = []
    try:
        for _ in range(1500):
            idle.append(socket.create_connection(("127.0.0.1", hostile.proxy), timeout=5))
        hostile.assert_healthy()  # new clients are still served
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10
    while open_fds(pid) > before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_fds(pid) <= before + 2, "file descriptors did not return to baseline"


def test_pipelined_flood_in_one_write(hostile: Hostile) -> None:
    one = b"GET /ok.txt HTTP/1.1\r\nHost: a\r\n\r\n"
    with socket.create_connection(("127.0.0.1", hostile.web), timeout=10) as sock:
        sock.sendall(one * 2000 + b"GET /ok.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        received = 0
        data = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
            received += chunk.count(b"HTTP/1.0 200 OK")
    assert received == 2001
    hostile.assert_healthy()


def test_console_fed_ten_megabytes_without_newline(hostile: Hostile) -> None:
    with socket.create_connection(("127.0.0.1", hostile.mgmt), timeout=10) as sock:
        try:
            for _ in range(10):
                sock.sendall(b"x" * (1 << 20))
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed on us: fine
        sock.settimeout(3)
        try:
            reply = sock.recv(4096)
        except (ConnectionResetError, socket.timeout):
            reply = b""
    assert reply == b"" or reply.startswith(b"ERROR:"), reply[:200]
    with socket.create_connection(("127.0.0.1", hostile.mgmt), timeout=5) as sock:
        sock.sendall(b"show service mgmt\r\n")
        time.sleep(0.3)
        assert b"SERVICE mgmt" in sock.recv(4096)


def test_http_post_to_management_cannot_change_config(hostile: Hostile) -> None:
    body = b"CREATE POOL evil\r\nSET proxy.pool = evil\r\n"
    reply = raw_exchange(hostile.mgmt, b"POST / HTTP/1.0\r\nContent-Length: %d\r\n\r\n"
                         % len(body) + body)
    assert status_of(reply) in (200, 400, 403, 404, 405), reply[:200]
    with socket.create_connection(("127.0.0.1", hostile.mgmt), timeout=5) as sock:
        sock.sendall(b"show pool\r\n")
        time.sleep(0.3)
        assert b"evil" not in sock.recv(4096)
    got = request(hostile.proxy, "GET", "/still-proxied", [("Host", "a")])
    assert got.status == 200
