"""Differential: the same reverse-proxy config and requests through Perl Perlbal 1.80 and ours.

Compared: the status line and headers the client gets, and the request head
(line, headers in order) the backend sees.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend, ReceivedRequest
from tests.support.configs import perl_forwarding, serve_proxy
from tests.support.perl_perlbal import PerlPerlbal
from tests.support.rawhttp import HTTPConnection


def _settings(persist_client: str, persist_backend: str, trusted: str) -> list[str]:
    return [f"SET persist_client = {persist_client}", f"SET persist_backend = {persist_backend}",
            f"SET always_trusted = {trusted}", "HEADER proxy insert X-Added: 1",
            "HEADER proxy remove X-Secret"]


REQUESTS: list[tuple[str, str, list[tuple[str, str]], bytes]] = [
    ("GET", "/a?b=c", [("Host", "example.com"), ("X-Forwarded-For", "10.1.1.1"),
                       ("X-Host", "h"), ("X-Secret", "s")], b""),
    ("POST", "/form", [("Host", "example.com"), ("Content-Type", "text/plain")], b"hello=world"),
    ("HEAD", "/h", [("Host", "example.com")], b""),
    ("GET", "/last", [("Host", "example.com"), ("Connection", "close")], b""),
]

Starter = Callable[[str], AbstractContextManager[object]]


def _exchange(start: Starter, **settings: str) -> tuple[list[object], list[ReceivedRequest]]:
    seen: list[object] = []
    with Backend("b") as backend:
        with serve_proxy([backend], extra=_settings(**settings), start=start) as px:
            with HTTPConnection(px.port) as conn:
                for method, path, headers, body in REQUESTS:
                    resp = conn.request(method, path, headers, body)
                    strip = {"x-backend-conn", "x-backend-req"}
                    seen.append((resp.version, resp.status, resp.reason,
                                 [(k, v) for k, v in resp.headers if k.lower() not in strip],
                                 resp.body if method != "GET" else b""))
                    if resp.header("Connection") == "close":
                        break
        return seen, backend.requests()


@pytest.mark.parametrize("settings", [
    {"persist_client": "on", "persist_backend": "on", "trusted": "off"},
    {"persist_client": "on", "persist_backend": "off", "trusted": "on"},
    {"persist_client": "off", "persist_backend": "off", "trusted": "off"},
])
def test_client_and_backend_see_what_perl_shows(need_perl_perlbal: None, settings: dict[str, str]) -> None:
    perl_seen, perl_backend = _exchange(lambda conf: PerlPerlbal(conf), **settings)
    # (ours with forwarded_headers = perl: the default adds X-Forwarded-Proto / -Port,
    # a documented difference, docs/migrating.md, tested in tests/security/)
    ours_seen, ours_backend = _exchange(lambda conf: PyPerlbal(perl_forwarding(conf)), **settings)
    assert ours_seen == perl_seen

    def view(reqs: list[ReceivedRequest]) -> list[object]:
        return [(r.method, r.target, r.version, r.headers, r.body) for r in reqs]

    assert view(ours_backend) == view(perl_backend)
