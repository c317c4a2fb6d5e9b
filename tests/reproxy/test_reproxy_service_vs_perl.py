"""X-REPROXY-SERVICE: a backend hands the request to another service; Perl 1.80 against ours.

The primary backend answers ``/to-other`` with ``X-REPROXY-SERVICE: other``
(a reverse proxy to a second backend), ``/to-nowhere`` with an unknown
service name; other paths are answered normally.  Compared: every byte the
client reads (less the test backend's counters), and what each backend saw.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager

from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend, BackendReply, ReceivedRequest
from tests.support.configs import perl_forwarding, pool, proxy_service
from tests.support.perl_perlbal import PerlPerlbal
from tests.support.ports import LOOPBACK, free_ports


def _conf(primary: Backend, second: Backend, port: int, reproxy: str) -> str:
    return (pool("primary", [primary]) + pool("second", [second])
            + proxy_service("other", None, "second", extra=["SET persist_client = on"])
            + proxy_service("front", port, "primary", extra=[
                "SET persist_client = on", f"SET enable_reproxy = {reproxy}"]))


Starter = Callable[[str], AbstractContextManager[object]]
_COUNTERS = re.compile(rb"X-Backend-(Conn|Req): \d+\r\n|\"(conn|req)\": \d+, ")


def _primary(request: ReceivedRequest) -> BackendReply | None:
    target = {"/to-other": "other", "/to-nowhere": "nowhere"}.get(request.target)
    if target is None:
        return None
    return BackendReply(headers=[("X-REPROXY-SERVICE", target)], body=b"primary")


def _talk(port: int, data: bytes) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=2) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except socket.timeout:
            out += b"<silence>"
    return _COUNTERS.sub(b"", out)


def _run(start: Starter, reproxy: str) -> tuple[list[bytes], list[str], list[str]]:
    (port,) = free_ports(1)
    with Backend("primary", handler=_primary) as primary, Backend("second") as second:
        conf = _conf(primary, second, port, reproxy)
        with start(conf):
            seen = [
                _talk(port, b"GET /to-other HTTP/1.0\r\nHost: h\r\n\r\n"),
                _talk(port, b"GET /plain HTTP/1.0\r\nHost: h\r\n\r\n"),
                _talk(port, b"HEAD /to-other HTTP/1.0\r\nHost: h\r\n\r\n"),
                _talk(port, b"GET /to-nowhere HTTP/1.0\r\nHost: h\r\n\r\n"),
            ]
        return (seen, [r.method + " " + r.target for r in primary.requests()],
                [r.method + " " + r.target for r in second.requests()])


def test_reproxy_service_matches_perl(need_perl_perlbal: None) -> None:
    perl = _run(lambda conf: PerlPerlbal(conf), "on")
    # (ours with forwarded_headers = perl: the default adds X-Forwarded-Proto /
    # -Port, which the backends' echo shows; documented in docs/migrating.md)
    ours = _run(lambda conf: PyPerlbal(perl_forwarding(conf)), "on")
    assert b'"name": "second"' in perl[0][0]
    assert b"Vhost twiddling not configured" in perl[0][3]
    assert ours == perl


def test_reproxy_service_needs_enable_reproxy(need_perl_perlbal: None) -> None:
    perl = _run(lambda conf: PerlPerlbal(conf), "off")
    ours = _run(lambda conf: PyPerlbal(perl_forwarding(conf)), "off")
    assert b"primary" in perl[0][0] and not perl[2]
    assert ours == perl
