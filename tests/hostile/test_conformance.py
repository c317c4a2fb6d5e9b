"""Conformance found by third-party suites (issue 24, items 11-13), through the
real server, on both roles: the web server and the reverse proxy.

11. absolute-form targets (RFC 9112 section 3.2.2): every ``http``/``https``
    URI is accepted, IP literals included; userinfo is refused;
12. an HTTP/1.0 request with ``Transfer-Encoding: chunked`` is refused
    (RFC 9112 section 6.1: its framing is faulty), as nginx does;
13. a complete request is answered whatever the client does after it: a
    half-close (``shutdown(SHUT_WR)``), or a second request pipelined after
    ``Connection: close`` (which is not read).
"""

from __future__ import annotations

import re
import socket

import pytest

from tests.hostile.conftest import Hostile, raw_exchange, status_of

ROLES = ["web", "proxy"]


def _port(hostile: Hostile, role: str) -> int:
    return hostile.web if role == "web" else hostile.proxy


def _body(reply: bytes) -> bytes:
    return reply.partition(b"\r\n\r\n")[2]


# --- 11: absolute-form -----------------------------------------------------------------


@pytest.mark.parametrize(("target", "path", "host"), [
    ("https://example.com/ok.txt", "/ok.txt", "example.com"),
    ("http://[::1]:8080/ok.txt", "/ok.txt", "[::1]"),
    ("HTTPS://Example.COM:443/ok.txt?x=1", "/ok.txt?x=1", "example.com"),
    ("http://127.0.0.1:81/ok.txt", "/ok.txt", "127.0.0.1"),
    ("http://example.com:8080/ok.txt", "/ok.txt", "example.com"),  # as Perl rewrites it
])
@pytest.mark.parametrize("role", ROLES)
def test_absolute_form_is_accepted(hostile: Hostile, role: str, target: str, path: str,
                                   host: str) -> None:
    before = len(hostile.backend.log)
    reply = raw_exchange(_port(hostile, role), f"GET {target} HTTP/1.1\r\nHost: other.example"
                         f"\r\nConnection: close\r\n\r\n".encode())
    assert status_of(reply) == 200, reply[:300]
    if role == "web":
        assert _body(reply) == b"ok\n"
    else:
        seen = hostile.backend.log[before:]
        assert [(r.target, r.header("Host")) for r in seen] == [(path, host)]


@pytest.mark.parametrize("target", [
    "http://user:pass@example.com/ok.txt", "https://user@example.com/ok.txt",
    "http://@example.com/ok.txt", "ftp://example.com/ok.txt", "http:///ok.txt",
    "http://[zz]/ok.txt", "http://exa<mple.com/ok.txt", "http://example.com:8o/ok.txt",
])
@pytest.mark.parametrize("role", ROLES)
def test_bad_absolute_form_is_refused(hostile: Hostile, role: str, target: str) -> None:
    before = len(hostile.backend.log)
    reply = raw_exchange(_port(hostile, role), f"GET {target} HTTP/1.1\r\nHost: x\r\n"
                         f"\r\n".encode())
    assert status_of(reply) == 400, reply[:300]
    assert b"example" not in _body(reply) and b"pass" not in _body(reply)  # never quoted
    assert len(hostile.backend.log) == before
    hostile.assert_healthy()


# --- 12: HTTP/1.0 with Transfer-Encoding: chunked --------------------------------------

CHUNKED_BODY = b"5\r\nhello\r\n0\r\n\r\n"


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("role", ROLES)
def test_http10_chunked_request_is_refused(hostile: Hostile, role: str, method: str) -> None:
    """RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty
    framing; nginx answers 400, so do we (it was read, de-chunked and forwarded)."""
    before = len(hostile.backend.log)
    reply = raw_exchange(_port(hostile, role), f"{method} /ok.txt HTTP/1.0\r\nHost: x\r\n"
                         f"Transfer-Encoding: chunked\r\n\r\n".encode() + CHUNKED_BODY)
    assert status_of(reply) == 400, reply[:300]
    assert b"chunked body on an HTTP/1.0 request" in _body(reply)
    assert b"Connection: close" in reply.partition(b"\r\n\r\n")[0]
    assert len(hostile.backend.log) == before
    hostile.assert_healthy()


def test_http10_chunked_put_is_perls_path(hostile: Hostile) -> None:
    """Perl's t/22-chunked-put.t sends its chunked PUT as HTTP/1.0: still stored."""
    reply = raw_exchange(hostile.web, b"PUT /chunked10.txt HTTP/1.0\r\nHost: x\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY)
    stored = hostile.docroot / "chunked10.txt"
    try:
        assert status_of(reply) in (200, 201, 204), reply[:300]
        assert stored.read_bytes() == b"hello"
    finally:
        stored.unlink(missing_ok=True)  # the package's other tests count leftovers


def test_http11_chunked_request_still_served(hostile: Hostile) -> None:
    before = len(hostile.backend.log)
    reply = raw_exchange(hostile.proxy, b"POST /c11 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY)
    assert status_of(reply) == 200, reply[:300]
    seen = hostile.backend.log[before:]
    assert [(r.target, r.body) for r in seen] == [("/c11", b"hello")]


def test_http10_chunked_upload_without_buffer_uploads_is_refused_before_100(
        hostile: Hostile) -> None:
    """No 100 Continue is promised for a request that will be refused: the 400
    comes at once, and the body is never asked for."""
    with socket.create_connection(("127.0.0.1", hostile.proxy), timeout=5) as sock:
        sock.sendall(b"PUT /f HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.0 400 "), out[:300]


# --- 13: half-close after a complete request; pipelined after Connection: close -------


def _half_closed(port: int, data: bytes) -> bytes:
    """Send ``data``, shut our side for writing (FIN), read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
@pytest.mark.parametrize("role", ROLES)
def test_half_close_after_a_complete_request_is_answered(hostile: Hostile, role: str,
                                                          version: str) -> None:
    before = len(hostile.backend.log)
    reply = _half_closed(_port(hostile, role), f"GET /ok.txt?half {version}\r\nHost: x\r\n"
                         f"\r\n".encode())
    assert status_of(reply) == 200, reply[:300]
    if role == "web":
        assert _body(reply) == b"ok\n"
    else:
        assert [r.target for r in hostile.backend.log[before:]] == ["/ok.txt?half"]


@pytest.mark.parametrize("role", ROLES)
def test_half_close_after_a_request_with_a_body_is_answered(hostile: Hostile, role: str) -> None:
    before = len(hostile.backend.log)
    method = "PUT" if role == "web" else "POST"
    reply = _half_closed(_port(hostile, role), f"{method} /half-body.txt HTTP/1.1\r\nHost: x\r\n"
                         f"Content-Length: 5\r\n\r\nhello".encode())
    assert status_of(reply) in (200, 201, 204), reply[:300]
    if role == "web":
        stored = hostile.docroot / "half-body.txt"
        try:
            assert stored.read_bytes() == b"hello"
        finally:
            stored.unlink(missing_ok=True)  # the package's other tests count leftovers
    else:
        assert [(r.target, r.body) for r in hostile.backend.log[before:]] == [
            ("/half-body.txt", b"hello")]


@pytest.mark.parametrize("role", ROLES)
def test_half_close_before_the_request_is_complete_answers_nothing(hostile: Hostile,
                                                                   role: str) -> None:
    before = len(hostile.backend.log)
    assert _half_closed(_port(hostile, role), b"GET /ok.txt HTTP/1.1\r\nHost: x\r\n") == b""
    assert len(hostile.backend.log) == before


@pytest.mark.parametrize("first", [
    b"GET /ok.txt?first HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /ok.txt?first HTTP/1.0\r\n\r\n",  # HTTP/1.0 without keep-alive: the same rule
])
@pytest.mark.parametrize("half_close", [False, True])
@pytest.mark.parametrize("role", ROLES)
def test_request_pipelined_after_connection_close_is_not_read(
        hostile: Hostile, role: str, half_close: bool, first: bytes) -> None:
    """RFC 9112 section 9.6: the request carrying ``close`` is answered, and no
    later request is processed.  The proxy used to answer Perl's 400 "Can't
    pipeline to HTTP/1.0" instead, the web server the first request."""
    before = len(hostile.backend.log)
    data = first + b"GET /ok.txt?second HTTP/1.1\r\nHost: x\r\n\r\n"
    port = _port(hostile, role)
    reply = _half_closed(port, data) if half_close else raw_exchange(port, data)
    assert [int(s) for s in re.findall(rb"(?:^|\n)HTTP/1\.[01] (\d{3}) ", reply)] == [200], \
        reply[:400]
    assert b"Connection: close" in reply.partition(b"\r\n\r\n")[0]
    if role == "proxy":
        assert [r.target for r in hostile.backend.log[before:]] == ["/ok.txt?first"]
