"""A scripted backend: the n-th request it reads (over all connections) is
answered by the n-th reply function, so a test can make a backend misbehave
in exactly one way (reset, stall, cut a reply short, send extra bytes)."""

from __future__ import annotations

import socket
from collections.abc import Callable

from tests.support.threadserver import ThreadedServer

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


class Script(ThreadedServer):
    """A backend whose n-th request (over all connections) is answered by
    ``replies[n](conn)``; it records every request head it read."""

    def __init__(self, replies: list[Callable[[socket.socket], None]]) -> None:
        self.replies = replies
        self.seen: list[bytes] = []
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                self.seen.append(head.split(b"\r\n", 1)[0])
                index = len(self.seen) - 1
                reply = self.replies[index] if index < len(self.replies) else _send(OK)
                try:
                    reply(conn)
                except OSError:
                    return
                if getattr(reply, "closes", False):
                    return


def _send(data: bytes, close: bool = False) -> Callable[[socket.socket], None]:
    def reply(conn: socket.socket) -> None:
        conn.sendall(data)
        if close:
            conn.shutdown(socket.SHUT_WR)
    reply.closes = close  # type: ignore[attr-defined]
    return reply


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()


_reset.closes = True  # type: ignore[attr-defined]
