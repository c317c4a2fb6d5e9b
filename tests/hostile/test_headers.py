"""Header abuse: oversized and too many headers, Host rules, odd targets, bad
bytes, hop-by-hop and forged forwarding headers."""

from __future__ import annotations

import json

import pytest

from tests.hostile.conftest import Hostile, raw_exchange, status_of
from tests.support.rawhttp import request

H = b"Host: example.com\r\n"


@pytest.mark.parametrize("target", ["proxy", "web"])
def test_one_huge_header_in_one_read(hostile: Hostile, target: str) -> None:
    port = hostile.proxy if target == "proxy" else hostile.web
    reply = raw_exchange(port, b"GET /big HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 200_000 +
                         b"\r\n\r\n")
    assert status_of(reply) in (400, 431), reply[:200]
    hostile.assert_healthy()


@pytest.mark.parametrize("target", ["proxy", "web"])
def test_thousands_of_headers(hostile: Hostile, target: str) -> None:
    port = hostile.proxy if target == "proxy" else hostile.web
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
    reply = raw_exchange(port, b"GET /many HTTP/1.1\r\n" + H + many + b"\r\n")
    assert status_of(reply) in (400, 431), reply[:200]
    hostile.assert_healthy()


CASES = {
    "missing_host_http11": b"GET /a HTTP/1.1\r\n\r\n",
    "duplicated_host": b"GET /a HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n",
    "bad_byte_in_name": b"GET /a HTTP/1.1\r\n" + H + b"X(A): b\r\n\r\n",
    "ctl_in_value": b"GET /a HTTP/1.1\r\n" + H + b"X-A: b\x01c\r\n\r\n",
    "nul_in_value": b"GET /a HTTP/1.1\r\n" + H + b"X-A: b\x00c\r\n\r\n",
    "empty_name": b"GET /a HTTP/1.1\r\n" + H + b": v\r\n\r\n",
    "garbage_request_line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    "two_spaces_in_request_line": b"GET  /a HTTP/1.1\r\n" + H + b"\r\n",
    "unknown_version": b"GET /a HTTP/3.7\r\n" + H + b"\r\n",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_heads_are_refused_before_the_backend(hostile: Hostile, name: str) -> None:
    before = len(hostile.backend.log)
    reply = raw_exchange(hostile.proxy, CASES[name])
    assert status_of(reply) in (400, 505), reply[:200]
    assert len(hostile.backend.log) == before
    hostile.assert_healthy()


def test_connect_and_absolute_form_never_reach_other_hosts(hostile: Hostile) -> None:
    before = len(hostile.backend.log)
    reply = raw_exchange(hostile.proxy, b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(reply) == 405, reply[:200]
    assert len(hostile.backend.log) == before
    # absolute-form goes to our own pool (never to the named host), if at all
    reply = raw_exchange(hostile.proxy, b"GET http://127.0.0.1:1/abs HTTP/1.1\r\n"
                         b"Host: 127.0.0.1:1\r\nConnection: close\r\n\r\n")
    assert status_of(reply) in (200, 400), reply[:200]
    hostile.assert_healthy()


def test_connection_listed_and_hop_by_hop_headers_not_forwarded(hostile: Hostile) -> None:
    got = request(hostile.proxy, "GET", "/hop", [
        ("Host", "example.com"), ("Connection", "keep-alive, X-Secret"),
        ("X-Secret", "do-not-forward"), ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"), ("TE", "trailers"), ("Upgrade", "h2c")])
    assert got.status == 200
    seen = {k.lower() for k, _ in hostile.backend.log[-1].headers}
    for name in ("x-secret", "keep-alive", "proxy-connection", "te", "upgrade"):
        assert name not in seen, (name, seen)


def test_forged_forwarding_headers_from_untrusted_peer(hostile: Hostile) -> None:
    got = request(hostile.proxy, "GET", "/xff", [
        ("Host", "example.com"), ("X-Forwarded-For", "6.6.6.6"),
        ("X-Host", "evil.example"), ("X-Forwarded-Host", "evil.example")])
    assert got.status == 200
    echoed = json.loads(got.body)
    headers = {k.lower(): v for k, v in echoed["headers"]}
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert "evil.example" not in (headers.get("x-host"), headers.get("x-forwarded-host"))
