"""The HTTP/1.x layer on h11 through the real server: each item of the issue
that moved framing onto h11, sent as a client or backend really sends it.

Uploads with curl's own defaults (Expect: 100-continue past 1 MB, chunked),
HTTP/1.0 chunked uploads with Expect, bare-LF backends, replies cut short,
duplicate Content-Lengths, oversized chunk sizes and request lines, silent
backends and trickled bodies under idle_timeout, HTTP/1.2.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import PERSIST, pool, proxy_config, proxy_service
from tests.support.digest_backend import BareLFBackend, payload, serve_wsgiref
from tests.hostile.conftest import raw_exchange
from tests.support.ports import free_ports
from tests.support.rawhttp import request
from tests.support.scripted_backend import Script, _send


@dataclass
class Stack:
    plain: int  # reverse proxy to wsgiref
    buffered: int  # the same with buffer_uploads = on
    bare: int  # reverse proxy to a bare-LF backend
    logged: int  # reverse proxy to the recording Backend
    bare_backend: BareLFBackend
    backend: Backend
    server: PyPerlbal


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    spool = tmp_path_factory.mktemp("spool")
    plain, buffered, bare, logged = free_ports(4)
    with serve_wsgiref() as wsgi, BareLFBackend() as bare_backend, Backend(name="b") as backend:
        buffering = ("SET buffer_uploads = on", f"SET buffer_uploads_path = {spool}",
                     "SET buffer_backend_connect = 50000")
        config = (pool("p_wsgi", [wsgi]) + pool("p_bare", [bare_backend.port])
                  + pool("p_logged", [backend])
                  + proxy_service("plain", plain, "p_wsgi", extra=PERSIST)
                  + proxy_service("buffered", buffered, "p_wsgi", extra=(*PERSIST, *buffering))
                  + proxy_service("bare", bare, "p_bare", extra=PERSIST)
                  + proxy_service("logged", logged, "p_logged", extra=PERSIST))
        with PyPerlbal(config) as server:
            yield Stack(plain, buffered, bare, logged, bare_backend, backend, server)


def _curl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", "--max-time", str(int(timeout)), *args],
                          capture_output=True, timeout=timeout + 5)


def _digest_of(out: bytes) -> dict[str, object]:
    result: dict[str, object] = json.loads(out)
    return result


@pytest.mark.parametrize("size", [2 * 1024 * 1024, 50 * 1024])
@pytest.mark.parametrize("service", ["plain", "buffered"])
@pytest.mark.parametrize("how", ["default", "expect", "chunked"])
def test_curl_uploads_arrive_whole(stack: Stack, tmp_path: Path, size: int, service: str,
                                   how: str) -> None:
    data = payload(size)
    upload = tmp_path / "up.bin"
    upload.write_bytes(data)
    extra = {"default": [], "expect": ["-H", "Expect: 100-continue"],
             "chunked": ["-H", "Transfer-Encoding: chunked"]}[how]
    port = stack.plain if service == "plain" else stack.buffered
    got = _curl("--data-binary", f"@{upload}", *extra, f"http://127.0.0.1:{port}/u")
    assert got.returncode == 0, got.stderr
    reply = _digest_of(got.stdout)
    assert reply["length"] == size
    assert reply["sha256"] == hashlib.sha256(data).hexdigest()


def _raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    return raw_exchange(port, data, timeout=timeout)


def test_http10_chunked_upload_with_expect(stack: Stack) -> None:
    """MogileFS-style uploaders (Perl's t/52-chunked-upload.t) on a buffer_uploads
    proxy: 100 first, then the body is read and forwarded, then the connection
    closes (RFC 9112 section 6.1).  Without buffer_uploads, Perl has no chunked
    path and we answer 400 (tests/hostile/test_conformance.py)."""
    with socket.create_connection(("127.0.0.1", stack.buffered), timeout=10) as sock:
        sock.sendall(b"PUT /f HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Expect: 100-continue\r\nConnection: keep-alive\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), out
    assert b"Connection: close" in head
    assert _digest_of(body)["sha256"] == hashlib.sha256(b"hello world").hexdigest()


def test_bare_lf_backend_is_served_and_reused(stack: Stack) -> None:
    before = stack.bare_backend.connections
    for i in range(3):
        got = request(stack.bare, "POST", f"/p{i}", [("Host", "x")], b"abc")
        assert got.status == 200, got
        assert got.header("Content-Type") == "application/json"
        assert _digest_of(got.body)["sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert stack.bare_backend.connections - before == 1  # kept alive, reused


def test_duplicate_identical_content_length_forwarded_once(stack: Stack) -> None:
    out = _raw(stack.logged, b"POST /dup HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n"
                             b"Content-Length: 3\r\n\r\nabc")
    assert out.startswith(b"HTTP/1.0 200")
    seen = [r for r in stack.backend.log if r.target == "/dup"][-1]
    assert [v for k, v in seen.headers if k.lower() == "content-length"] == ["3"]
    assert seen.body == b"abc"


def test_21_hex_digit_chunk_size_refused(stack: Stack) -> None:
    out = _raw(stack.logged, b"POST /hex HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             + b"0" * 20 + b"1\r\nx\r\n0\r\n\r\n")
    assert out.startswith(b"HTTP/1.0 400")
    assert all(r.target != "/hex" for r in stack.backend.log)


def test_long_request_line_gets_414_at_once(stack: Stack) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", stack.logged), timeout=10) as sock:
        sock.sendall(b"GET /" + b"a" * 20000)  # no CRLF, and the client waits
        out = sock.recv(65536)
    assert out.startswith(b"HTTP/1.0 414"), out[:100]
    assert time.monotonic() - started < 3


def test_large_head_in_one_read_gets_431(stack: Stack) -> None:
    out = _raw(stack.logged, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 40000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.0 431")


def test_http_1_2_is_served_as_1_1(stack: Stack) -> None:
    out = _raw(stack.logged, b"GET /v12 HTTP/1.2\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.0 200"), out[:100]


def test_chunked_reply_cut_short_is_not_passed_off_as_whole() -> None:
    """curl must fail (not exit 0 with a short body) when the backend's chunked
    reply ends before its last chunk."""
    cut = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"400\r\n" + b"x" * 1024 + b"\r\n")
    script = Script([_send(cut, close=True), _send(cut, close=True)])
    (port,) = free_ports(1)
    config = proxy_config(port, [script.port])
    try:
        with PyPerlbal(config):
            got = _curl(f"http://127.0.0.1:{port}/cut")
            assert got.returncode != 0, (got.returncode, len(got.stdout))
            got = _curl("--http1.0", f"http://127.0.0.1:{port}/cut")
            assert got.returncode != 0
    finally:
        script.close()


def _stall_after(data: bytes) -> "object":
    def reply(conn: socket.socket) -> None:
        conn.sendall(data)
        time.sleep(12)
    return reply


@pytest.mark.parametrize(("name", "sent", "expect"), [
    ("silent", b"", 504),
    ("mid-head", b"HTTP/1.1 200 OK\r\nContent-Le", 504),
    ("mid-body", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", None),
])
def test_idle_timeout_bounds_a_silent_backend(name: str, sent: bytes, expect: int | None) -> None:
    script = Script([_stall_after(sent)])  # type: ignore[list-item]
    (port,) = free_ports(1)
    config = proxy_config(port, [script.port], extra=["SET idle_timeout = 3"])
    try:
        with PyPerlbal(config):
            started = time.monotonic()
            out = _raw(port, b"GET /slow HTTP/1.0\r\n\r\n", timeout=15)
            elapsed = time.monotonic() - started
    finally:
        script.close()
    assert 2.5 < elapsed < 6, elapsed
    if expect is not None:
        assert out.startswith(b"HTTP/1.0 %d" % expect), out[:100]
    else:
        assert out.startswith(b"HTTP/1.0 200") and out.endswith(b"partial")


def test_trickled_request_body_is_cut() -> None:
    """One byte a second must not hold the connection past idle_timeout plus the
    grace of client_body_min_rate (Perl restarts its timer at every byte)."""
    with Backend(name="t") as backend:
        (port,) = free_ports(1)
        config = proxy_config(port, [backend], extra=["SET idle_timeout = 3",
                                                      "SET buffer_backend_connect = 0"])
        with PyPerlbal(config):
            with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
                sock.sendall(b"POST /t HTTP/1.0\r\nContent-Length: 100\r\n\r\n")
                started = time.monotonic()
                closed_after = None
                for _ in range(12):
                    try:
                        sock.sendall(b"x")
                    except OSError:
                        closed_after = time.monotonic() - started
                        break
                    time.sleep(1)
                    sock.settimeout(0.01)
                    try:
                        if sock.recv(65536) == b"":
                            closed_after = time.monotonic() - started
                            break
                    except socket.timeout:
                        pass
                    except OSError:
                        closed_after = time.monotonic() - started
                        break
                    sock.settimeout(15)
            assert closed_after is not None and closed_after < 6, closed_after


@pytest.mark.parametrize("how", ["expect", "chunked"])
def test_web_server_put_with_curl_defaults(tmp_path: Path, how: str) -> None:
    """curl -T with Expect: 100-continue (or chunked): the web server answers 100
    when it wants the body, as Perl's ClientHTTP does, and stores it whole."""
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    data = payload(3 * 1024 * 1024)
    upload = tmp_path / "up.bin"
    upload.write_bytes(data)
    (port,) = free_ports(1)
    config = f"""
CREATE SERVICE web
  SET role = web_server
  SET listen = 127.0.0.1:{port}
  SET docroot = {docroot}
  SET enable_put = on
ENABLE web
"""
    extra = (["-H", "Expect: 100-continue"] if how == "expect"
             else ["-H", "Transfer-Encoding: chunked"])
    with PyPerlbal(config):
        started = time.monotonic()
        got = _curl("-T", str(upload), *extra, "-o", "/dev/null", "-w", "%{http_code}",
                    f"http://127.0.0.1:{port}/stored.bin")
        elapsed = time.monotonic() - started
    assert got.returncode == 0, got.stderr
    assert got.stdout in (b"200", b"201", b"204"), got.stdout
    assert (docroot / "stored.bin").read_bytes() == data
    assert elapsed < 0.9  # curl waits 1 s for a 100 that never comes


def test_a_client_may_wait_before_its_first_request(stack: Stack) -> None:
    """Silence before the first head is bounded by idle_timeout, not by the
    one-second wake-ups that let a graceful shutdown close such connections."""
    with socket.create_connection(("127.0.0.1", stack.logged), timeout=10) as sock:
        time.sleep(2.5)
        sock.sendall(b"GET /late HTTP/1.0\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.0 200")
