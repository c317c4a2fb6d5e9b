"""Security #19 item 9: a client's Connection header cannot strip end-to-end fields.

``Connection: close, Host, Authorization, X-Drop`` through the real proxy: the
backend still gets Host and Authorization (Perl Perlbal 1.80 forwards every
header unchanged, so the two servers agree there), while the unprotected
``X-Drop`` is removed as a hop-by-hop field by ours only (a documented
difference, see docs/migrating.md).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable

from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend, ReceivedRequest
from tests.support.configs import serve_proxy
from tests.support.perl_perlbal import PerlPerlbal, requires_perl_perlbal
from tests.support.rawhttp import request

CLIENT_HEADERS = [
    ("Host", "app.example"),
    ("Authorization", "Basic dXNlcjpwdw=="),
    ("Cookie", "session=1"),
    ("X-Forwarded-For", "10.9.9.9"),
    ("X-Drop", "secret"),
    ("Connection", "close, Host, Authorization, Cookie, X-Forwarded-For, Content-Length, X-Drop"),
]


def _backend_saw(start: Callable[[str], AbstractContextManager[object]]) -> ReceivedRequest:
    with Backend("b") as backend:
        with serve_proxy([backend], start=start) as px:
            resp = request(px.port, "POST", "/x", CLIENT_HEADERS, body=b"hello", timeout=20)
            assert resp.status == 200
        (seen,) = backend.requests()
    return seen


def test_connection_cannot_nominate_protected_fields() -> None:
    seen = _backend_saw(PyPerlbal)
    assert seen.header("Host") == "app.example"
    assert seen.header("Authorization") == "Basic dXNlcjpwdw=="
    assert seen.header("Cookie") == "session=1"
    assert seen.header("X-Forwarded-For") == "127.0.0.1"  # untrusted peer: replaced, not dropped
    assert seen.header("Content-Length") == "5" and seen.body == b"hello"
    assert seen.header("X-Drop") is None  # an ordinary field may be nominated


@requires_perl_perlbal
def test_protected_fields_reach_the_backend_as_in_perl() -> None:
    ours, perl = _backend_saw(PyPerlbal), _backend_saw(PerlPerlbal)
    for field in ("Host", "Authorization", "Cookie", "Content-Length", "X-Forwarded-For"):
        assert ours.header(field) == perl.header(field) is not None, field
    assert perl.header("X-Drop") == "secret"  # Perl ignores Connection's nominations
