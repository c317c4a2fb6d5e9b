"""Upload rig: a proxy with buffer_uploads in front of a test backend, and paced clients.

``run_upload(start, mode)`` sends one upload the way ``mode`` says (all at once,
paced slowly, or chunked) and returns what the client and the backend saw, plus
whether the spool directory was left empty.  Perl and ours run in parallel
threads (``both``) to keep the wall time down.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.backend import Backend
from tests.support.configs import proxy_config
from tests.support.ports import LOOPBACK, free_ports
from tests.support.pyserver import ANY_PORT, PyPerlbal
from tests.support.rawhttp import HTTPConnection


def upload_config(backend: Backend, port: int | str, spool: str, *, early: int, time: int, rate: int,
                  size: int, extra: str = "") -> str:
    """A buffering proxy on ``port`` spooling to ``spool``; ``extra``: more lines."""
    return proxy_config(port, [backend], extra=[
        "SET persist_client = on", f"SET buffer_uploads_path = {spool}", "SET buffer_uploads = on",
        f"SET buffer_backend_connect = {early}", f"SET buffer_upload_threshold_time = {time}",
        f"SET buffer_upload_threshold_rate = {rate}", f"SET buffer_upload_threshold_size = {size}",
        *extra.splitlines()])


Starter = Callable[[str], AbstractContextManager[object]]


@dataclass
class Mode:
    body_size: int
    piece: int = 0  # bytes per write when paced (0: everything at once)
    interval: float = 0.0
    chunked: bool = False
    early: int = 2000
    time: int = 0
    rate: int = 0
    size: int = 0
    extra: str = ""
    path: str = "/up"


@dataclass
class Outcome:
    status: int = 0
    client_headers: list[tuple[str, str]] = field(default_factory=list)
    backend_heads: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)
    backend_bodies: list[bytes] = field(default_factory=list)
    spool_left: list[str] = field(default_factory=list)


def body_bytes(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


def _send_paced(sock: socket.socket, data: bytes, piece: int, interval: float) -> None:
    start = time.monotonic()
    for n, offset in enumerate(range(0, len(data), piece)):
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sock.sendall(data[offset:offset + piece])


def run_upload(start: Starter, mode: Mode, *, port_zero: bool = False) -> Outcome:
    """``port_zero``: ``start`` runs our server, which binds port 0 and reports
    its port (``PyPerlbal.port``); else (Perl Perlbal) a free port is chosen."""
    listen: int | str = ANY_PORT if port_zero else free_ports(1)[0]
    out = Outcome()
    body = body_bytes(mode.body_size)
    with tempfile.TemporaryDirectory(prefix="spool-") as spool, Backend("b") as backend:
        conf = upload_config(backend, listen, spool, early=mode.early, time=mode.time,
                             rate=mode.rate, size=mode.size, extra=mode.extra)
        with start(conf) as server:
            port = server.port("proxy") if isinstance(server, PyPerlbal) else int(listen)
            with HTTPConnection(port, timeout=30) as conn:
                if mode.chunked:
                    head = (b"POST %s HTTP/1.1\r\nHost: example.com\r\n" % mode.path.encode()
                            + b"Transfer-Encoding: chunked\r\n\r\n")
                    pieces = [body[i:i + 7000] for i in range(0, len(body), 7000)]
                    wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
                else:
                    head = (b"POST %s HTTP/1.1\r\nHost: example.com\r\n" % mode.path.encode()
                            + b"Content-Length: %d\r\n\r\n" % len(body))
                    wire = body
                if mode.piece:
                    conn.send(head)
                    time.sleep(mode.interval)
                    _send_paced(conn.sock, wire, mode.piece, mode.interval)
                else:
                    conn.send(head + wire)
                resp = conn.read_response("POST")
                out.status = resp.status
                out.client_headers = [(k, v) for k, v in resp.headers
                                      if k.lower() not in ("x-backend-conn", "x-backend-req")]
            time.sleep(0.2)  # let the spool file go
            out.spool_left = sorted(p.name for p in Path(spool).iterdir())
        for req in backend.requests():
            out.backend_heads.append((req.method, req.target,
                                      [(k, v) for k, v in req.headers
                                       if k.lower() not in ("x-forwarded-for",)]))
            out.backend_bodies.append(req.body)
    return out


def both(perl: Callable[[], Outcome], ours: Callable[[], Outcome]) -> tuple[Outcome, Outcome]:
    """Run the Perl and our scenario at the same time; returns (perl, ours)."""
    results: dict[str, Outcome] = {}
    errors: list[BaseException] = []

    def run(name: str, fn: Callable[[], Outcome]) -> None:
        try:
            results[name] = fn()
        except BaseException as exc:  # re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=("perl", perl)),
               threading.Thread(target=run, args=("ours", ours))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    if errors:
        raise errors[0]
    return results["perl"], results["ours"]


def connect(port: int) -> socket.socket:
    return socket.create_connection((LOOPBACK, port), timeout=30)
