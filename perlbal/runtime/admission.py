"""SERVER max_connections, enforced: a client beyond the limit gets a 503 page and is closed.

Perl Perlbal's ``max_connections`` only set RLIMIT_NOFILE, so a full server
failed accept() and clients hung or saw resets.  Ours also counts open client
connections of non-management listeners (``Runtime.limited_connections``);
while that count is at the limit, ``Runtime._accept_loop`` hands each new
socket to ``refuse``: the page below (over TLS on a TLS listener), then close.
Management connections are never refused, so the console stays reachable.

Invariants: a refused connection is never counted as open and never reaches
a role handler; at most ``MAX_REFUSING`` refusals are in progress at once
(beyond that a refused socket is closed at once), and each lasts 6 s at most.
"""

from __future__ import annotations

import socket
import ssl

import anyio

from perlbal.runtime.aio import FastStream, wrap_accepted

__all__ = ["refuse", "refusal_page", "busy", "MAX_REFUSING"]

#: Refusal pages sent at once; past this a refused client is closed without one.
MAX_REFUSING = 256
_refusing = 0


def busy() -> bool:
    return _refusing >= MAX_REFUSING


def refusal_page(limit: int) -> bytes:
    body = ("<html><head><title>503 Service Unavailable</title></head><body>\n"
            "<h1>503 - Service Unavailable</h1>\n"
            f"<p>Too many connections: this server takes at most {limit} client "
            "connections at once (SERVER max_connections). Please try again shortly.</p>\n"
            "</body></html>\n").encode("ascii")
    head = ("HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/html\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


async def refuse(sock: socket.socket, tls: ssl.SSLContext | None, limit: int) -> None:
    """Send the page, half-close, let it arrive (1 s at most), then close."""
    global _refusing
    _refusing += 1
    stream: FastStream | None = None
    try:
        with anyio.move_on_after(5):
            stream = await wrap_accepted(sock, tls, handshake_timeout=5)
            await stream.send(refusal_page(limit))
            await stream.send_eof()
            with anyio.move_on_after(1):
                while await stream.receive(65536):
                    pass
    except (OSError, anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
    finally:
        _refusing -= 1
        if stream is not None:
            stream.abort()
        else:
            sock.close()
