"""A scripted backend: the n-th request it reads (over all connections) is
answered by the n-th reply function, so a test can make a backend misbehave
in exactly one way (reset, stall, cut a reply short, send extra bytes)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


@dataclass
class Script:
    """A backend whose n-th request (over all connections) is answered by
    ``replies[n](conn)``; it records every request head it read."""

    replies: list[Callable[[socket.socket], None]]
    seen: list[bytes] = field(default_factory=list)
    conns: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
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

    def close(self) -> None:
        self.sock.close()


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
