"""The ``upload_tracker`` role and the ``/__upload_status`` query (Perl's UploadListener.pm).

A service with ``role = upload_tracker`` listens on UDP at its ``listen``
address for the progress datagrams that ``upload_status_listeners`` send
(``perlbal.runtime.uploads``): ``UPLOAD:<session>:<done>:<total>:<start>:<now>``.
What it hears goes into one table per process, whichever tracker heard it
(with SERVER workers the supervisor listens and passes each datagram on to
every worker's table).

A reverse proxy with ``upload_status_listeners`` set answers
``GET /__upload_status?client_up_sess=<session>`` itself, from that table,
as Perl's ClientProxy::handle_upload_tracking does: ``200``, ``text/plain``,
``{done:D,total:T,starttime:S,nowtime:N}`` (Perl's own not-quite-JSON), or
``{}`` for a session it knows nothing of.

Invariants (Perl's): a datagram that does not match the format exactly is
ignored; each one replaces the session's record and notes when it was
touched; records untouched for more than 4 seconds are removed, checked when
a datagram arrives (so the table stays bounded by the traffic of the last
4 seconds).
"""

from __future__ import annotations

import re
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import anyio

__all__ = ["serve_datagrams", "status_body", "wants_status", "record"]

_DATAGRAM = re.compile(rb"UPLOAD:(\w{5,50}):(\d+):(\d+):(\d+):(\d+)")
_STATUS_QUERY = re.compile(r"[?&]client_up_sess=(\w{5,50})\b")
#: Perl forgets a session this many seconds after its last datagram
FORGET_AFTER = 4
#: Perl reads at most this much of a datagram
DATAGRAM_SIZE = 500


@dataclass
class _Status:
    done: int
    total: int
    starttime: int
    lasttouch: float


_status: dict[str, _Status] = {}
_touched: deque[tuple[float, str]] = deque()


def record(datagram: bytes, now: float | None = None) -> bool:
    """Take one progress datagram; False when it is not one."""
    match = _DATAGRAM.fullmatch(datagram[:DATAGRAM_SIZE])
    if match is None:
        return False
    now = int(time.time()) if now is None else now
    session = match.group(1).decode("ascii")
    _status[session] = _Status(int(match.group(2)), int(match.group(3)),
                               int(match.group(4)), now)
    _touched.append((now, session))
    too_old = now - FORGET_AFTER
    while _touched and _touched[0][0] < too_old:
        _, name = _touched.popleft()
        entry = _status.get(name)
        if entry is not None and entry.lasttouch < too_old:
            del _status[name]
    return True


def wants_status(target: str) -> str | None:
    """The session a ``/__upload_status?...client_up_sess=...`` request asks about."""
    if not target.startswith("/__upload_status?"):
        return None
    match = _STATUS_QUERY.search(target)
    return match.group(1) if match is not None else None


def status_body(session: str) -> bytes:
    entry = _status.get(session)
    if entry is None:
        return b"{}"
    return (f"{{done:{entry.done},total:{entry.total},starttime:{entry.starttime},"
            f"nowtime:{int(time.time())}}}").encode("ascii")


async def serve_datagrams(sock: socket.socket,
                          heard: Callable[[bytes], None] | None = None) -> None:
    """One upload_tracker listener: every datagram arriving on ``sock`` (non-blocking)
    is recorded, until the caller's cancel scope ends this; ``heard`` gets each one
    recorded (SERVER workers: the supervisor passes them on to every worker)."""
    while True:
        await anyio.wait_readable(sock)
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                if sock.fileno() == -1:
                    return
                break  # an ICMP error for a datagram we never sent: nothing to do
            if record(data) and heard is not None:
                heard(data[:DATAGRAM_SIZE])
