"""Reading a PROXY protocol header off a just-accepted socket (``SET proxy_protocol``).

The header comes before anything else on the connection -- before a TLS
handshake too -- so it is read from the raw socket, ahead of the stream
(``aio.wrap_accepted``), and exactly its own bytes are consumed: what
follows belongs to HTTP or TLS.  ``perlbal.http.proxyproto.HeaderReader``
says how many bytes to peek at and how many of them are header; those are
consumed at once, so a header sent in pieces leaves nothing unread and the
wait for its next piece is a wait for readability (no polling: issue 24
item 6, where a half-sent header was peeked at every 5 ms).  A v2 header
may be as long as ``V2_MAX`` (16 KiB): its TLVs are read to the end.

Only peers that ``trusted_upstream_proxies`` (or ``always_trusted``) names
may send one; from them it is required.  Anything else -- an untrusted peer,
no header, a malformed or too long one, none whole within
``proxy_protocol_timeout`` (its own deadline: idle_timeout, even 0, does not
stretch it) -- closes the connection with one log line.  The address the
header names then stands for the client everywhere: X-Forwarded-For, the
access log, ACCESS rules, Throttle (``FastStream.proxied_peer``, read by
``clientconn.serve_client``).
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Callable

import anyio

from perlbal.graph import Service
from perlbal.http.proxyproto import HeaderReader, ProxyHeader, ProxyProtocolError
from perlbal.runtime.trust import trusted

__all__ = ["read_header", "ProxyRefused", "DEFAULT_TIMEOUT"]

log = logging.getLogger("perlbal.runtime")

#: proxy_protocol_timeout when it is 0
DEFAULT_TIMEOUT = 10.0


class ProxyRefused(Exception):
    """The connection may not go on (the reason was logged)."""


async def _readable(sock: socket.socket, timeout: float) -> None:
    with anyio.fail_after(timeout):
        await anyio.wait_readable(sock)


def _timeout(svc: Service) -> float:
    value = svc.tunables.proxy_protocol_timeout
    return value if value > 0 else DEFAULT_TIMEOUT


async def read_header(sock: socket.socket, svc: Service, peer_ip: str,
                      draining: Callable[[], bool] = lambda: False) -> ProxyHeader:
    """The PROXY header of a connection to ``svc``, consumed from ``sock``.
    Gives up (ProxyRefused) once ``draining()`` says a graceful shutdown began:
    a connection that has not even sent its header has nothing in flight."""
    if not trusted(svc, peer_ip):
        log.warning("service %s: PROXY protocol from %s refused: not a trusted upstream proxy "
                    "(trusted_upstream_proxies)", svc.name, peer_ip)
        raise ProxyRefused
    deadline = time.monotonic() + _timeout(svc)
    reader = HeaderReader()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            try:  # (a second at a time: a graceful shutdown must not wait on it)
                await _readable(sock, min(left, 1.0))
            except TimeoutError:
                if draining():
                    raise ProxyRefused from None
                continue
            peeked = sock.recv(reader.window(), socket.MSG_PEEK)
            if not peeked:
                # connect and close: a balancer's plain TCP health check, not worth a line
                log.debug("service %s: %s closed without a word", svc.name, peer_ip)
                raise ProxyRefused
            count = reader.take(peeked)
            while count:  # the peek saw them: they are there to take
                count -= len(sock.recv(count))
            if reader.header is not None:
                return reader.header
    except ProxyRefused:
        raise
    except (ProxyProtocolError, TimeoutError, OSError) as exc:
        why = ("no whole PROXY header within proxy_protocol_timeout"
               if isinstance(exc, TimeoutError) else str(exc))
        log.warning("service %s: connection from %s closed: %s", svc.name, peer_ip, why)
        raise ProxyRefused from None
