"""Tests for perlbal.http.reproxy: X-REPROXY-* parsing and the reproxy request head."""

from __future__ import annotations

import pytest

from perlbal.http.errors import BackendProtocolError
from perlbal.http.reproxy import (
    ReproxyCacheFor,
    ReproxyTarget,
    parse_reproxy_cache_for,
    parse_reproxy_expected_size,
    parse_reproxy_file,
    parse_reproxy_urls,
    reproxy_request_head,
)


def test_urls_in_order_invalid_skipped() -> None:
    # Recorded with Perl Perlbal 1.80: "http://127.0.0.1:18441/plain bogus http://127.0.0.1:1/x"
    # fetched the first URL and skipped "bogus".
    value = "http://127.0.0.1:18441/plain  bogus\thttp://127.0.0.1:1/x http://example.com"
    assert parse_reproxy_urls(value) == [
        ReproxyTarget("127.0.0.1", 18441, "/plain"),
        ReproxyTarget("127.0.0.1", 1, "/x"),
        ReproxyTarget("example.com", 80, "/"),
    ]


@pytest.mark.parametrize(
    "url",
    [
        "https://a/x",
        "http://host:abc/x",
        "http://host:0/x",
        "http://host:70000/x",
        "http:///x",
        "http://a_b!/x",
        "http://user@host/x",
        "ftp://a/x",
        "http://300.1.1.1/x",
        "http://-bad.example/x",
    ],
)
def test_bad_urls_skipped(url: str) -> None:
    assert parse_reproxy_urls(url) == []


def test_ipv6_and_empty() -> None:
    assert parse_reproxy_urls("http://[::1]:8080/a") == [ReproxyTarget("[::1]", 8080, "/a")]
    assert parse_reproxy_urls(None) == [] and parse_reproxy_urls("") == []


def test_reproxy_file() -> None:
    assert parse_reproxy_file(" /var/data/f.jpg ") == "/var/data/f.jpg"
    for bad in ["relative/path", "", "/a\x00b"]:
        with pytest.raises(BackendProtocolError):
            parse_reproxy_file(bad)


def test_expected_size() -> None:
    assert parse_reproxy_expected_size("1234") == 1234
    assert parse_reproxy_expected_size(None) is None
    assert parse_reproxy_expected_size("") is None
    assert parse_reproxy_expected_size("0") is None  # Perl: a false value is ignored
    for bad in ["12a", "-1", "1" * 19]:
        with pytest.raises(BackendProtocolError):
            parse_reproxy_expected_size(bad)


def test_cache_for() -> None:
    assert parse_reproxy_cache_for("60") == ReproxyCacheFor(60, ())
    assert parse_reproxy_cache_for("60; Content-Type  Last-Modified") == ReproxyCacheFor(
        60, ("Content-Type", "Last-Modified")
    )
    assert parse_reproxy_cache_for("0; Content-Type") is None
    assert parse_reproxy_cache_for(None) is None
    for bad in ["soon", "10s", "60; Bad:Name"]:
        with pytest.raises(BackendProtocolError):
            parse_reproxy_cache_for(bad)


def test_request_head() -> None:
    # Recorded from Perl Perlbal 1.80: the reproxy target received exactly
    # b'GET /plain HTTP/1.0\r\nConnection: keep-alive\r\n\r\n' (client sent no Host/Range).
    assert reproxy_request_head("POST", "/plain") == b"GET /plain HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    assert reproxy_request_head("HEAD", "/p", range_header="bytes=0-1", host="h") == (
        b"HEAD /p HTTP/1.0\r\nConnection: keep-alive\r\nRange: bytes=0-1\r\nHost: h\r\n\r\n"
    )
