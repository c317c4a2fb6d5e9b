"""Reading a PROXY protocol header off a just-accepted socket (``SET proxy_protocol``).

The header comes before anything else on the connection -- before a TLS
handshake too -- so it is read from the raw socket, ahead of the stream
(``aio.wrap_accepted``), and exactly its own bytes are consumed: what
follows belongs to HTTP or TLS.  It is peeked at (``MSG_PEEK``) until whole;
a balancer writes it in one segment, so the wait between peeks is short.

Only peers that ``trusted_upstream_proxies`` (or ``always_trusted``) names
may send one; from them it is required.  Anything else -- an untrusted peer,
no header, a malformed one, none within ``idle_timeout`` -- closes the
connection with one log line.  The address the header names then stands for
the client everywhere: X-Forwarded-For, the access log, ACCESS rules,
Throttle (``FastStream.proxied_peer``, read by ``clientconn.serve_client``).
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Callable

import anyio

from perlbal.graph import Service
from perlbal.http.proxyproto import ProxyHeader, ProxyProtocolError, parse
from perlbal.runtime.trust import trusted

__all__ = ["read_header", "ProxyRefused"]

log = logging.getLogger("perlbal.runtime")

#: a v2 header with addresses and some TLVs fits; a v1 line is at most 107 bytes
_PEEK = 536
_RETRY = 0.005


class ProxyRefused(Exception):
    """The connection may not go on (the reason was logged)."""


async def _readable(sock: socket.socket, timeout: float | None) -> None:
    with anyio.fail_after(timeout):
        await anyio.wait_readable(sock)


async def read_header(sock: socket.socket, svc: Service, peer_ip: str,
                      draining: Callable[[], bool] = lambda: False) -> ProxyHeader:
    """The PROXY header of a connection to ``svc``, consumed from ``sock``.
    Gives up (ProxyRefused) once ``draining()`` says a graceful shutdown began:
    a connection that has not even sent its header has nothing in flight."""
    if not trusted(svc, peer_ip):
        log.warning("service %s: PROXY protocol from %s refused: not a trusted upstream proxy "
                    "(trusted_upstream_proxies)", svc.name, peer_ip)
        raise ProxyRefused
    raw = svc.tunables.idle_timeout
    timeout = float(raw) if raw > 0 else None
    deadline = time.monotonic() + timeout if timeout is not None else None
    try:
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:  # (a second at a time: a graceful shutdown must not wait on it)
                await _readable(sock, min(left, 1.0) if left is not None else 1.0)
            except TimeoutError:
                if draining():
                    raise ProxyRefused from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                continue
            data = sock.recv(_PEEK, socket.MSG_PEEK)
            if not data:
                # connect and close: a balancer's plain TCP health check, not worth a line
                log.debug("service %s: %s closed without a word", svc.name, peer_ip)
                raise ProxyRefused
            header = parse(data)
            if header is not None:
                taken = 0
                while taken < header.consumed:  # all there: the peek saw it
                    taken += len(sock.recv(header.consumed - taken))
                return header
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError
            await anyio.sleep(_RETRY)  # part of a header: the rest is on its way
    except ProxyRefused:
        raise
    except (ProxyProtocolError, TimeoutError, OSError) as exc:
        why = "no PROXY header in time" if isinstance(exc, TimeoutError) else str(exc)
        log.warning("service %s: connection from %s closed: %s", svc.name, peer_ip, why)
        raise ProxyRefused from None
