"""Security review items 1-3, through the real server (each failed on the code
before the fix):

1. CR/LF injection into a backend request through FlvStreaming's ``start``, a
   late reply left on a pooled backend connection served to the next client,
   and a traceback on an undecodable ``start``;
2. DNS rebinding: the management port's HTTP side running console commands
   sent as a PUT body, and answering any Host;
3. a chunked request body held whole in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from perlbal.http.fields import UnsafeField, render_fields
from perlbal.http.proxyheaders import backend_request_line
from perlbal.http.responses import render_head
from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import PERSIST, proxy_config
from tests.support.digest_backend import serve_wsgiref
from tests.hostile.conftest import raw_exchange
from tests.support.ports import free_ports
from tests.support.rawhttp import request
from tests.support.scripted_backend import OK, Script, _send

SMUGGLE = (b"GET /v.flv?start=1%0d%0aConnection:%20keep-alive%0d%0a%0d%0aGET%20/poison"
           b"%20HTTP/1.0%0d%0aX-A:%20 HTTP/1.0\r\nHost: x\r\n\r\n")


def _raw(port: int, data: bytes, timeout: float = 5) -> bytes:
    return raw_exchange(port, data, timeout=timeout)


@pytest.fixture(scope="module")
def flv() -> Iterator[tuple[int, Backend, PyPerlbal]]:
    (port,) = free_ports(1)
    with Backend(name="flv") as backend:
        config = proxy_config(port, [backend], load=["FlvStreaming"],
                              extra=["SET persist_backend = on", "SET plugins = FlvStreaming"])
        with PyPerlbal(config) as server:
            yield port, backend, server


def test_flv_start_cannot_smuggle_a_request(flv: tuple[int, Backend, PyPerlbal]) -> None:
    port, backend, _server = flv
    out = _raw(port, SMUGGLE)
    assert out.startswith(b"HTTP/1.0 200"), out[:200]
    assert all(not r.target.startswith("/poison") for r in backend.log)
    seen = [r for r in backend.log if r.target.startswith("/v.flv")][-1]
    assert seen.header("Range") is None  # not a decimal offset: not used
    assert all("\r" not in v and "\n" not in v for _k, v in seen.headers)
    # a decimal start still works as in Perl
    _raw(port, b"GET /v.flv?start=42 HTTP/1.0\r\nHost: x\r\n\r\n")
    assert backend.log[-1].header("Range") == "bytes=42-"


def test_undecodable_start_is_no_traceback(flv: tuple[int, Backend, PyPerlbal]) -> None:
    port, _backend, server = flv
    for start in (b"%E2%80%A8", b"%ff%fe", b"%00"):
        out = _raw(port, b"GET /v.flv?start=" + start + b" HTTP/1.0\r\nHost: x\r\n\r\n")
        assert out.startswith(b"HTTP/1.0 200"), out[:200]
    assert "Traceback" not in server.output()[1]


def test_headers_are_checked_when_rendered() -> None:
    """Whatever produced a field (plugin, HEADER rule, reproxy), it cannot split a head."""
    for bad in [("X", "a\r\nInjected: 1"), ("X", "a\x00"), ("Bad Name", "v"), ("X", "\u2028")]:
        with pytest.raises(UnsafeField):
            render_fields([bad])
        with pytest.raises(UnsafeField):
            render_head(200, [bad])
    with pytest.raises(UnsafeField):
        backend_request_line("GET", "/a HTTP/1.0\r\nX: y")
    assert render_fields([("X", "caf\xe9\tok")]) == b"X: caf\xe9\tok\r\n"


def _late_reply(conn: socket.socket) -> None:
    """Answer, then (while idle in the pool) send a reply nobody asked for."""
    conn.sendall(OK)

    def later() -> None:
        time.sleep(0.3)
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\npoison")
        except OSError:
            pass
    threading.Thread(target=later, daemon=True).start()
    time.sleep(0.5)


def test_idle_backend_with_unread_bytes_is_never_reused() -> None:
    script = Script([_late_reply, _send(OK), _send(OK)])
    (port,) = free_ports(1)
    config = proxy_config(port, [script.port], extra=PERSIST)
    try:
        with PyPerlbal(config):
            assert request(port, "GET", "/first", [("Host", "x")]).body == b"ok"
            time.sleep(0.6)  # the late bytes sit on the pooled connection now
            second = request(port, "GET", "/second", [("Host", "x")])
            assert second.body == b"ok", second
            assert script.connections == 2  # a fresh connection, not the poisoned one
    finally:
        script.close()


@pytest.fixture(scope="module")
def mgmt() -> Iterator[int]:
    (port,) = free_ports(1)
    config = f"""
CREATE SERVICE mgmt
  SET role = management
  SET listen = 127.0.0.1:{port}
  SET allowed_hosts = perlbal.internal
ENABLE mgmt
"""
    with PyPerlbal(config):
        yield port


def _console(port: int, line: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(line.encode() + b"\r\nquit\r\n")
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out.decode()


def test_put_with_console_lines_is_405_and_runs_nothing(mgmt: int) -> None:
    body = b"CREATE SERVICE pwn\r\nSET pwn.role = web_server\r\nSET pwn.docroot = /\r\n"
    out = _raw(mgmt, b"PUT / HTTP/1.1\r\nHost: evil.example\r\nContent-Length: %d\r\n\r\n"
               % len(body) + body)
    assert out.startswith(b"HTTP/1.0 405"), out[:200]
    assert "pwn" not in _console(mgmt, "show service")


@pytest.mark.parametrize(("host", "status"), [
    ("evil.example", 403), ("evil.example:80", 403), ("127.0.0.1", 200), ("localhost:1", 200),
    ("[::1]", 200), ("perlbal.internal", 200), ("PERLBAL.internal:8080", 200),
])
def test_web_ui_answers_only_known_hosts(mgmt: int, host: str, status: int) -> None:
    out = _raw(mgmt, f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.0 %d" % status), out[:200]


def test_console_still_works(mgmt: int) -> None:
    assert "mgmt" in _console(mgmt, "show service")


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_withheld_chunked_body_is_not_held_in_memory(tmp_path: os.PathLike[str]) -> None:
    with serve_wsgiref() as wsgi:
        (port,) = free_ports(1)
        config = proxy_config(port, [wsgi])
        with PyPerlbal(config) as server:
            assert server.proc is not None
            before = _rss_kib(server.proc.pid)
            chunk = b"100000\r\n" + b"z" * 0x100000 + b"\r\n"
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                for _ in range(60):  # 60 MiB, the last chunk withheld
                    sock.sendall(chunk)
                time.sleep(0.5)
                grown = _rss_kib(server.proc.pid) - before
                sock.sendall(b"0\r\n\r\n")
                reply = b""
                while b"}" not in reply:
                    data = sock.recv(65536)
                    if not data:
                        break
                    reply += data
            assert reply.startswith(b"HTTP/1.0 200"), reply[:200]
            digest = json.loads(reply.partition(b"\r\n\r\n")[2])
            assert digest["length"] == 60 * 0x100000
            assert digest["sha256"] == hashlib.sha256(b"z" * (60 * 0x100000)).hexdigest()
            assert grown < 20 * 1024, f"RSS grew {grown} KiB for one client"
