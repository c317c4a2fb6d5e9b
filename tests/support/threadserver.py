"""A loopback TCP server for tests: each connection served on a thread of its own.

Backends that misbehave on purpose (scripted replies, PROXY-header readers,
stalling or slow ones) differ only in ``serve``; the socket, the accept loop
and the connection count are here once.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

from tests.support.ports import LOOPBACK


class ThreadedServer:
    """Listens on 127.0.0.1 (a free port: ``port``) as soon as it is made;
    ``serve(conn)`` runs on a new thread for every accepted connection, and
    ``connections`` counts them.  ``close`` (or leaving a ``with``) stops it."""

    backlog = 16

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(self.backlog)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.connections += 1
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        try:  # wakes the accept() in progress, which a bare close() would leave listening
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> "ThreadedServer":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
