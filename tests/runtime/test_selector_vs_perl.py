"""Differential: selector semantics and HTTP/1.0 pipelining, Perl Perlbal 1.80 against ours.

- ``persist_client`` of a request that came through a selector is the
  selector's (Perl's setup_keepalive reads ``selector_svc || service``);
- a VHOST naming a management service answers 500 "Can't map to service type
  management" (Perl's adopt_base_client), and the connection goes on;
- a second request pipelined behind a body-less request on a connection that
  is not kept alive: Perl answers 400 "Can't pipeline to HTTP/1.0" and
  forwards nothing; ours answers the first request and reads no further, as
  the web server does (docs/migrating.md; issue 24, item 13).

Compared: every byte the client reads, less the test backend's counters.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import management, perl_forwarding, pool, proxy_service, vhost_selector
from tests.support.perl_perlbal import PerlPerlbal
from tests.support.ports import LOOPBACK, free_ports


def _conf(backend: Backend, sel_on: int, sel_off: int, direct: int, mgmt: int) -> str:
    return ("LOAD vhosts\n" + pool("p", [backend]) + management(mgmt)
            + proxy_service("px_off", None, "p", extra=["SET persist_client = off"])
            + proxy_service("px_on", None, "p", extra=["SET persist_client = on"])
            + vhost_selector("sel_on", sel_on, {"off.example": "px_off", "console.example": "mgmt"},
                             extra=["SET persist_client = on"])
            + vhost_selector("sel_off", sel_off, {"on.example": "px_on"},
                             extra=["SET persist_client = off"])
            + proxy_service("direct", direct, "p", extra=["SET persist_client = off"]))


Starter = Callable[[str], AbstractContextManager[object]]
_COUNTERS = re.compile(rb"X-Backend-(Conn|Req): \d+\r\n|\"(conn|req)\": \d+, ")


def _talk(port: int, data: bytes, timeout: float = 2.0) -> bytes:
    """Send ``data`` at once, read until the server closes (or ``timeout`` of silence)."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except socket.timeout:
            out += b"<silence>"
    return _COUNTERS.sub(b"", out)


def _run(start: Starter) -> list[bytes]:
    sel_on, sel_off, direct, mgmt = free_ports(4)
    with Backend("b") as backend:
        conf = _conf(backend, sel_on, sel_off, direct, mgmt)
        with start(conf):
            return [
                # selector persist on, selected service off: kept alive (then the
                # client's Connection: close on the second request ends it)
                _talk(sel_on, b"GET /a HTTP/1.0\r\nHost: off.example\r\nConnection: keep-alive"
                              b"\r\n\r\n"),
                # selector persist off, selected service on: closed
                _talk(sel_off, b"GET /b HTTP/1.0\r\nHost: on.example\r\nConnection: keep-alive"
                               b"\r\n\r\n"),
                # a VHOST to the console: 500, and the next request is still served
                _talk(sel_on, b"GET /c HTTP/1.0\r\nHost: console.example\r\n"
                              b"Connection: keep-alive\r\n\r\n"
                              b"GET /d HTTP/1.0\r\nHost: off.example\r\n\r\n"),
                _talk(sel_on, b"GET /c HTTP/1.0\r\nHost: console.example\r\n\r\n"),
                # pipelined behind a request that is not kept alive
                _talk(direct, b"GET /e HTTP/1.0\r\nHost: x\r\n\r\nGET /f HTTP/1.0\r\nHost: x\r\n\r\n"),
                _talk(direct, b"GET /g HTTP/1.1\r\nHost: x\r\n\r\nGET /h HTTP/1.1\r\nHost: x\r\n\r\n"),
                # not pipelined: served
                _talk(direct, b"GET /i HTTP/1.0\r\nHost: x\r\n\r\n"),
            ]


def test_selector_semantics_match_perl(need_perl_perlbal: None) -> None:
    perl = _run(lambda conf: PerlPerlbal(conf))
    # (ours with forwarded_headers = perl: the default adds X-Forwarded-Proto / -Port,
    # which the backend's echo shows; a documented difference, docs/migrating.md)
    ours = _run(lambda conf: PyPerlbal(perl_forwarding(conf)))
    assert b"Connection: keep-alive" in perl[0] and b"Connection: close" in perl[1]
    assert b"Can't map to service type management" in perl[2]
    # pipelined on a connection that is not kept alive (persist_client off):
    # Perl refuses; ours answers the first request, and nothing after it
    for index, first, second in ((4, b"/e", b"/f"), (5, b"/g", b"/h")):
        assert b"Can't pipeline to HTTP/1.0" in perl[index]
        assert re.findall(rb"HTTP/1\.\d \d{3} ", ours[index]) == [b"HTTP/1.0 200 "], ours[index]
        assert b'"target": "%s"' % first in ours[index] and second not in ours[index]
    for index, (theirs, mine) in enumerate(zip(perl, ours)):
        if index in (4, 5):
            continue
        # the first case keeps the connection: both stop after their silence
        assert mine == theirs, f"case {index}"


def test_console_never_reached_through_a_selector() -> None:
    """The 500 comes from the selector; no console page or command output leaks."""
    out = _run(lambda conf: PyPerlbal(conf))[3]
    assert out.startswith(b"HTTP/1.0 500 Internal Server Error\r\n")
    assert b"perlbal" not in out.lower().replace(b"server: perlbal", b"")
