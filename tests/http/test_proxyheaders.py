"""Tests for perlbal.http.proxyheaders, with header lists recorded from Perl Perlbal 1.80.

The recordings come from a reverse_proxy service in front of a scripted
backend on 127.0.0.1: the backend logged what Perl sent it, the client logged
what Perl relayed back.
"""

from __future__ import annotations

import pytest

from perlbal.http.connection import BackendSide, parse_request_head
from perlbal.http.head import Header, ResponseHead


def parse_response_head(raw: bytes) -> ResponseHead:
    side = BackendSide("GET")
    side.receive_data(raw)
    head = side.next_head()
    assert head is not None
    return head
from perlbal.http.proxyheaders import (
    backend_keep_alive,
    backend_request_headers,
    backend_request_line,
    client_keep_alive,
    client_response_headers,
    forwarding_headers,
    munge_headers,
    remove_headers,
    set_header,
    strip_hop_by_hop,
)

CLIENT_HEADERS: list[Header] = [
    ("Host", "h"),
    ("User-Agent", "ua"),
    ("X-Forwarded-For", "1.2.3.4"),
    ("X-Host", "xh"),
    ("X-Forwarded-Host", "xfh"),
    ("Keep-Alive", "300"),
    ("Connection", "keep-alive, foo"),
    ("Foo", "bar"),
    ("TE", "trailers"),
]


class TestSetHeader:
    def test_replace_in_place_keeps_case(self) -> None:
        headers = [("A", "1"), ("X-Thing", "old"), ("B", "2"), ("x-thing", "dup")]
        assert set_header(headers, "X-THING", "new") == [("A", "1"), ("X-Thing", "new"), ("B", "2")]

    def test_append_and_remove(self) -> None:
        assert set_header([("A", "1")], "B", "2") == [("A", "1"), ("B", "2")]
        assert set_header([("A", "1"), ("a", "2")], "A", None) == []

    def test_input_not_mutated(self) -> None:
        headers = [("A", "1")]
        set_header(headers, "A", "2")
        assert headers == [("A", "1")]


class TestBackendRequest:
    def test_untrusted_exactly_as_perl(self) -> None:
        # Recorded from Perl Perlbal 1.80 (persist_backend off, enable_reproxy on,
        # HEADER insert X-Added: 1, HEADER remove User-Agent, untrusted client):
        # GET /plain HTTP/1.0\r\nHost: h\r\nX-Forwarded-For: 127.0.0.1\r\nKeep-Alive: 300\r\n
        # Connection: close\r\nFoo: bar\r\nTE: trailers\r\nX-Proxy-Capabilities: reproxy-file\r\n
        # x-added: 1\r\n\r\n
        out = backend_request_headers(
            CLIENT_HEADERS,
            client_ip="127.0.0.1",
            trusted=False,
            blind_proxy=False,
            persist_backend=False,
            enable_reproxy=True,
            remove=["user-agent"],
            insert=[("x-added", "1")],
            strip_hop_by_hop=False,
        )
        assert out == [
            ("Host", "h"),
            ("X-Forwarded-For", "127.0.0.1"),
            ("Keep-Alive", "300"),
            ("Connection", "close"),
            ("Foo", "bar"),
            ("TE", "trailers"),
            ("X-Proxy-Capabilities", "reproxy-file"),
            ("x-added", "1"),
        ]

    def test_hop_by_hop_stripped_by_default(self) -> None:
        out = backend_request_headers(
            CLIENT_HEADERS,
            client_ip="127.0.0.1",
            trusted=False,
            blind_proxy=False,
            persist_backend=False,
            enable_reproxy=False,
        )
        assert out == [
            ("Host", "h"),
            ("User-Agent", "ua"),
            ("X-Forwarded-For", "127.0.0.1"),
            ("Connection", "close"),
        ]

    def test_appended_order_without_existing_fields(self) -> None:
        # Recorded: Host, Connection: close, X-Proxy-Capabilities, X-Forwarded-For, x-added
        out = backend_request_headers(
            [("Host", "h")],
            client_ip="127.0.0.1",
            trusted=False,
            blind_proxy=False,
            persist_backend=False,
            enable_reproxy=True,
            insert=[("x-added", "1")],
        )
        assert [name for name, _ in out] == [
            "Host", "Connection", "X-Proxy-Capabilities", "X-Forwarded-For", "x-added",
        ]

    def test_trusted_appends(self) -> None:
        # Recorded (always_trusted on, persist_backend on):
        # X-Forwarded-For: 1.2.3.4, 5.6.7.8, 127.0.0.1 ; X-Host kept ; Connection: keep-alive
        out = backend_request_headers(
            [("Host", "h"), ("X-Forwarded-For", "1.2.3.4, 5.6.7.8"), ("X-Host", "xh"), ("Connection", "close")],
            client_ip="127.0.0.1",
            trusted=True,
            blind_proxy=False,
            persist_backend=True,
            enable_reproxy=False,
        )
        assert out == [
            ("Host", "h"),
            ("X-Forwarded-For", "1.2.3.4, 5.6.7.8, 127.0.0.1"),
            ("X-Host", "xh"),
            ("Connection", "keep-alive"),
        ]

    def test_forwarding_variants(self) -> None:
        headers = [("X-Forwarded-For", "1.1.1.1,2.2.2.2"), ("x-forwarded-for", "3.3.3.3"), ("X-Host", "a")]
        assert forwarding_headers(headers, "9.9.9.9", trusted=True, blind_proxy=True) == headers
        assert forwarding_headers(headers, "9.9.9.9", trusted=True, blind_proxy=False) == [
            ("X-Forwarded-For", "1.1.1.1, 2.2.2.2, 3.3.3.3, 9.9.9.9"),
            ("X-Host", "a"),
        ]
        assert forwarding_headers([], "9.9.9.9", trusted=True, blind_proxy=False) == [
            ("X-Forwarded-For", "9.9.9.9")
        ]
        assert forwarding_headers(headers, "9.9.9.9", trusted=False, blind_proxy=True) == [
            ("X-Forwarded-For", "9.9.9.9")
        ]

    def test_forwarding_with_a_listener_sanitizes_untrusted_claims(self) -> None:
        """forwarded_headers = sanitize (issue 24 item 10): an untrusted client's
        scheme, port and Forwarded claims go; the listener's stand in their place."""
        claims = [("X-Forwarded-Proto", "https"), ("Forwarded", "proto=https"),
                  ("X-Forwarded-Port", "443"), ("X-Forwarded-Host", "bank"), ("X-Foo", "1")]
        assert forwarding_headers(claims, "9.9.9.9", trusted=False, blind_proxy=False,
                                  listener=("http", 8080)) == [
            ("X-Forwarded-Proto", "http"), ("X-Forwarded-Port", "8080"), ("X-Foo", "1"),
            ("X-Forwarded-For", "9.9.9.9")]
        # a trusted proxy's claims stand, the missing ones are filled in
        assert forwarding_headers(claims[:2], "9.9.9.9", trusted=True, blind_proxy=False,
                                  listener=("http", 8080)) == [
            ("X-Forwarded-Proto", "https"), ("Forwarded", "proto=https"),
            ("X-Forwarded-For", "9.9.9.9"), ("X-Forwarded-Port", "8080")]
        # ...and nothing is added under blind_proxy
        assert forwarding_headers(claims[:2], "9.9.9.9", trusted=True, blind_proxy=True,
                                  listener=("https", 443)) == claims[:2]
        # without a listener (forwarded_headers = perl) the claims pass, as in Perl
        assert forwarding_headers(claims, "9.9.9.9", trusted=False, blind_proxy=False) == [
            ("X-Forwarded-Proto", "https"), ("Forwarded", "proto=https"),
            ("X-Forwarded-Port", "443"), ("X-Foo", "1"), ("X-Forwarded-For", "9.9.9.9")]

    def test_munge_removes_first_then_inserts(self) -> None:
        out = munge_headers([("A", "1"), ("B", "2")], remove=["a", "b"], insert=[("B", "new"), ("c", "3")])
        assert out == [("B", "new"), ("c", "3")]
        out = munge_headers([("X-Thing", "old")], remove=[], insert=[("x-thing", "new")])
        assert out == [("X-Thing", "new")]

    def test_strip_hop_by_hop(self) -> None:
        headers = [("Connection", "Upgrade, X-Secret"), ("Upgrade", "h2c"), ("x-secret", "s"),
                   ("Proxy-Connection", "keep-alive"), ("Trailer", "x"), ("Transfer-Encoding", "chunked"),
                   ("Keep", "me")]
        assert strip_hop_by_hop(headers) == [("Keep", "me")]
        assert remove_headers(headers, ["KEEP"]) == headers[:-1]

    def test_request_line(self) -> None:
        assert backend_request_line("POST", "/a?b") == b"POST /a?b HTTP/1.0\r\n"


def request(text: str) -> object:
    return parse_request_head(text.replace("\n", "\r\n").encode())


class TestKeepAlive:
    @pytest.mark.parametrize(
        ("head", "response", "status", "persist", "expected"),
        [
            ("GET / HTTP/1.0\nConnection: keep-alive\n\n", [("Content-Length", "2")], 200, True, True),
            ("GET / HTTP/1.0\nConnection: keep-alive\n\n", [("Content-Length", "2")], 200, False, False),
            ("GET / HTTP/1.0\n\n", [("Content-Length", "2")], 200, True, False),
            ("GET / HTTP/1.1\nHost: h\n\n", [("Content-Length", "2")], 200, True, True),
            ("GET / HTTP/1.1\nHost: h\n\n", [], 200, True, False),
            ("GET / HTTP/1.1\nHost: h\n\n", [], 304, True, True),
            ("GET / HTTP/1.1\nHost: h\n\n", [], 204, True, True),
            ("HEAD / HTTP/1.1\nHost: h\n\n", [], 200, True, True),
            ("GET / HTTP/1.1\nHost: h\nConnection: close\n\n", [("Content-Length", "2")], 200, True, False),
        ],
    )
    def test_client_keep_alive(
        self, head: str, response: list[Header], status: int, persist: bool, expected: bool
    ) -> None:
        req = parse_request_head(head.replace("\n", "\r\n").encode())
        assert client_keep_alive(req, response, status, persist_client=persist) is expected

    @pytest.mark.parametrize(
        ("head", "method", "expected"),
        [
            ("HTTP/1.1 200 OK\nContent-Length: 1\n\n", "GET", True),
            ("HTTP/1.1 200 OK\n\n", "GET", True),
            ("HTTP/1.1 200 OK\nConnection: close\n\n", "GET", False),
            ("HTTP/1.0 200 OK\nContent-Length: 1\n\n", "GET", False),
            ("HTTP/1.0 200 OK\nConnection: keep-alive\nContent-Length: 1\n\n", "GET", True),
            ("HTTP/1.0 200 OK\nConnection: keep-alive\n\n", "GET", False),
            ("HTTP/1.0 200 OK\nConnection: keep-alive\n\n", "HEAD", True),
            ("HTTP/1.0 304 OK\nConnection: keep-alive\n\n", "GET", True),
        ],
    )
    def test_backend_keep_alive(self, head: str, method: str, expected: bool) -> None:
        res = parse_response_head(head.replace("\n", "\r\n").encode())
        assert backend_keep_alive(res, method) is expected


class TestClientResponse:
    BACKEND: list[Header] = [
        ("Content-Type", "text/plain"),
        ("Content-Length", "2"),
        ("Keep-Alive", "timeout=5"),
        ("Connection", "keep-alive"),
        ("X-Custom", "yes"),
        ("Server", "backend"),
    ]

    def test_keep_alive_in_place_as_perl(self) -> None:
        # Recorded from Perl Perlbal 1.80 (persist_client on, client keep-alive):
        # HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n
        # Keep-Alive: timeout=30, max=100\r\nConnection: keep-alive\r\nX-Custom: yes\r\nServer: backend
        out = client_response_headers(self.BACKEND, keep_alive=True, idle_timeout=30)
        assert out == [
            ("Content-Type", "text/plain"),
            ("Content-Length", "2"),
            ("Keep-Alive", "timeout=30, max=100"),
            ("Connection", "keep-alive"),
            ("X-Custom", "yes"),
            ("Server", "backend"),
        ]

    def test_close_as_perl(self) -> None:
        # Recorded (persist_client off): ...Content-Length: 2\r\nConnection: close\r\nX-Custom: yes...
        out = client_response_headers(self.BACKEND, keep_alive=False)
        assert out == [
            ("Content-Type", "text/plain"),
            ("Content-Length", "2"),
            ("Connection", "close"),
            ("X-Custom", "yes"),
            ("Server", "backend"),
        ]

    def test_hop_by_hop_dropped(self) -> None:
        out = client_response_headers(
            [("Transfer-Encoding", "chunked"), ("Upgrade", "x"), ("Connection", "x-b"), ("X-B", "1")],
            keep_alive=True,
            idle_timeout=0,
        )
        assert out == [("Connection", "keep-alive")]
        kept = client_response_headers([("Upgrade", "x")], keep_alive=False, strip_hop_by_hop=False)
        assert kept == [("Upgrade", "x"), ("Connection", "close")]
