"""Plain socket calls on one connection's socket, beside the event loop (no asyncio).

``aio.FastStream`` drives the transport; what it asks of the kernel directly
is here: a socket option that fails quietly on a socket already gone, the
SO_LINGER 0 that makes a close a TCP RST, a send flagged MSG_MORE, and the
non-blocking TCP_NODELAY socket a backend connection starts as.
"""

from __future__ import annotations

import socket
import struct

#: "more data follows" for send(2); Linux only (0 elsewhere: the flag is skipped)
MSG_MORE: int = getattr(socket, "MSG_MORE", 0)


def set_option(sock: socket.socket | None, level: int, option: int,
               value: int | bytes) -> None:
    """``setsockopt``, ignored when there is no socket or it refuses (gone already)."""
    if sock is not None:
        try:
            sock.setsockopt(level, option, value)
        except OSError:
            pass


def linger_zero(sock: socket.socket | None) -> None:
    """Make the socket's close a TCP RST (SO_LINGER on, 0 seconds)."""
    set_option(sock, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def send_more(sock: object, data: bytes) -> int | None:
    """Send what the kernel takes of ``data`` now, flagged MSG_MORE: how many
    bytes (0 when full or failing: the transport's write then meets it).  None
    when it cannot be done: no MSG_MORE here, or not a plain socket (TLS)."""
    if not MSG_MORE or not isinstance(sock, socket.socket):
        return None
    try:
        return sock.send(data, MSG_MORE)
    except OSError:
        return 0


def tcp_socket(host: str, sndbuf: int = 0) -> socket.socket:
    """A non-blocking socket for ``host`` (an address) with TCP_NODELAY, and
    SO_SNDBUF ``sndbuf`` unless 0; closed again if setting it up fails."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    except BaseException:
        sock.close()
        raise
    return sock
