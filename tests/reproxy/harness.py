"""Shared rig for reproxy tests: a primary backend that answers with X-REPROXY-* headers
and a second backend (the reproxy target) that serves a fixed body and honours Range.

``run_scenario(start, primary_headers, requests)`` runs one config through a server
(``PerlPerlbal`` or ``PyPerlbal``) and returns what the client saw, normalised so
Perl and ours can be compared: Date and the test backends' connection counters are
dropped, everything else (status line, header order and case, body) is kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from tests.support.backend import Backend, BackendReply, ReceivedRequest
from tests.support.configs import PERSIST, proxy_config
from tests.support.ports import free_ports
from tests.support.rawhttp import HTTPConnection, IncompleteResponse

TARGET_BODY = b"0123456789abcdefghijklmnopqrstuvwxyz" * 10  # 360 bytes


def reproxy_config(primary: Backend, port: int, *, enable: str, cache: int,
                   extra: str = "") -> str:
    """A keep-alive proxy on ``port`` in front of ``primary``; ``extra``: more lines."""
    return proxy_config(port, [primary], extra=[
        *PERSIST, f"SET enable_reproxy = {enable}", f"SET reproxy_cache_maxsize = {cache}",
        *extra.splitlines()])


Starter = Callable[[str], AbstractContextManager[object]]
_VOLATILE = {"x-backend-conn", "x-backend-req"}


def target_handler(request: ReceivedRequest) -> BackendReply:
    """The reproxy target: a fixed 360-byte body; ``Range: bytes=a-b`` gives 206 / 416."""
    if request.target.startswith("/missing"):
        return BackendReply(status=404, reason="Not Found", body=b"nope")
    rng = request.header("Range")
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
    headers = [("Content-Type", "text/plain"), ("X-Target-Saw", f"{request.method} {request.target}"),
               ("X-Target-Host", request.header("Host") or "-")]
    if match:
        start = int(match.group(1))
        end = min(int(match.group(2) or len(TARGET_BODY) - 1), len(TARGET_BODY) - 1)
        if start >= len(TARGET_BODY):
            return BackendReply(status=416, reason="Requested Range Not Satisfiable",
                                headers=[*headers, ("Content-Range", f"bytes */{len(TARGET_BODY)}")])
        return BackendReply(status=206, reason="Partial Content", body=TARGET_BODY[start:end + 1],
                            headers=[*headers, ("Accept-Ranges", "bytes"),
                                     ("Content-Range", f"bytes {start}-{end}/{len(TARGET_BODY)}")])
    return BackendReply(headers=headers, body=TARGET_BODY)


@dataclass
class Seen:
    responses: list[object] = field(default_factory=list)
    primary_requests: int = 0
    target_requests: list[str] = field(default_factory=list)


def normalise(resp: object) -> object:
    from tests.support.rawhttp import RawResponse
    assert isinstance(resp, RawResponse)
    headers = [(k, "<date>" if k.lower() == "date" else v) for k, v in resp.headers
               if k.lower() not in _VOLATILE]
    return (resp.version, resp.status, resp.reason, headers, resp.body)


def run_scenario(start: Starter, primary_headers: Callable[[str], list[tuple[str, str]]],
                 requests: Sequence[tuple[str, str, list[tuple[str, str]]]], *,
                 enable: str = "on", cache: int = 0, extra: str = "",
                 between: Callable[[], None] | None = None) -> Seen:
    """``primary_headers(target_address)`` gives the primary backend's reply headers."""
    (port,) = free_ports(1)
    seen = Seen()
    with Backend("target", handler=target_handler) as target:
        reproxy_headers = primary_headers(target.address)

        def primary(request: ReceivedRequest) -> BackendReply:
            return BackendReply(headers=[("Content-Type", "text/html"), *reproxy_headers],
                                body=b"primary body")

        with Backend("primary", handler=primary) as backend:
            conf = reproxy_config(backend, port, enable=enable, cache=cache, extra=extra)
            with start(conf):
                conn = HTTPConnection(port, timeout=20)
                try:
                    for method, path, headers in requests:
                        try:
                            resp = conn.request(method, path, [("Host", "example.com"), *headers])
                        except (IncompleteResponse, OSError) as exc:
                            seen.responses.append(f"error: {type(exc).__name__}")
                            conn.close()
                            conn = HTTPConnection(port, timeout=20)
                            continue
                        seen.responses.append(normalise(resp))
                        if resp.header("Connection") != "keep-alive" or conn.is_closed_by_peer(0.05):
                            seen.responses.append("closed")
                            conn.close()
                            conn = HTTPConnection(port, timeout=20)
                        if between is not None:
                            between()
                finally:
                    conn.close()
            seen.primary_requests = len(backend.requests())
            seen.target_requests = [f"{r.method} {r.target} range={r.header('Range')}"
                                    for r in target.requests()]
    return seen
