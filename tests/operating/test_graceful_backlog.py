"""A graceful stop serves the connections already waiting in a listener's backlog.

The kernel completes a client's handshake before the server accepts it; a
listener closed with such connections queued resets them, and a balancer that
already sent a request on one cannot retry it (tests/operating/test_scale_out.py
lost one of ~450 requests that way under load).  Here the server is stopped
(SIGSTOP) while five clients connect and send a request, so all five wait in
the backlog, then told to stop gracefully (SIGTERM) and let run: each gets its
answer, and the backend saw each request.
"""

from __future__ import annotations

import os
import signal
import socket

from tests.support.backend import Backend
from tests.support.configs import proxy_config
from tests.support.ports import LOOPBACK
from tests.support.pyserver import ANY_PORT, PyPerlbal


def _reply(sock: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        return b"reset after " + out
    return out


def test_graceful_stop_serves_connections_waiting_in_the_backlog() -> None:
    with Backend("b") as backend, PyPerlbal(proxy_config(ANY_PORT, [backend])) as server:
        assert server.proc is not None
        pid, port = server.proc.pid, server.port("proxy")
        os.kill(pid, signal.SIGSTOP)
        try:
            clients = [socket.create_connection((LOOPBACK, port), timeout=20) for _ in range(5)]
            for n, sock in enumerate(clients):
                sock.sendall(b"GET /queued%d HTTP/1.0\r\nHost: h\r\n\r\n" % n)
            os.kill(pid, signal.SIGTERM)  # delivered once it runs again
        finally:
            os.kill(pid, signal.SIGCONT)
        replies = []
        for sock in clients:
            with sock:
                replies.append(_reply(sock))
        assert server.proc.wait(20) == 0
    assert [r[:15] for r in replies] == [b"HTTP/1.0 200 OK"] * 5, replies
    assert sorted(r.target for r in backend.requests()) == [f"/queued{n}" for n in range(5)]
