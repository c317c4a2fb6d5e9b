"""After a backend's ``101 Switching Protocols``: a two-way byte tunnel.

The reverse proxy sent the client's Upgrade request to a backend
(``perlbal.http.upgrade``) and the backend agreed.  From here on neither side
speaks HTTP: the 101 goes to the client, then every byte from one side is
written to the other (WebSocket frames, or any upgraded protocol), with the
usual back-pressure of our streams.

Ends: each direction ends at its sender's end of stream, which is passed on as
a half-close (``send_eof``), so a protocol's own closing handshake still gets
through; the tunnel ends when both directions have, when either connection
breaks, or after ``idle_timeout`` seconds in which neither side sent anything
(the service's idle_timeout; 0: no limit).  The backend connection is then
closed, never returned to the pool, and so is the client's.

Invariant: bytes are never dropped or reordered within a direction; the bytes
that arrived with the heads (``ctx.http.buffered`` from the client,
``side.leftover`` from the backend) are written first.
"""

from __future__ import annotations

import time

import anyio

from perlbal.http import BackendSide
from perlbal.http.upgrade import client_switch_head
from perlbal.runtime.context import RECV_SIZE, RequestContext
from perlbal.runtime.aio import FastStream

__all__ = ["run_tunnel"]

#: how often a silent tunnel checks whether the other direction is silent too
_TICK = 1.0


class _Activity:
    def __init__(self) -> None:
        self.last = time.monotonic()


async def _pump(source: FastStream, sink: FastStream, first: bytes, activity: _Activity,
                idle: float | None) -> None:
    if first:
        await sink.send(first)
    while True:
        try:
            data = await source.receive(RECV_SIZE, timeout=min(idle, _TICK) if idle else None)
        except TimeoutError:
            if idle is not None and time.monotonic() - activity.last >= idle:
                raise
            continue
        except anyio.EndOfStream:
            data = b""
        if not data:
            await sink.send_eof()
            return
        activity.last = time.monotonic()
        await sink.send(data)


async def run_tunnel(ctx: RequestContext, backend: FastStream, side: BackendSide) -> None:
    """Send the 101 to the client, then relay bytes both ways until the tunnel ends.

    The caller closes the backend connection afterwards and closes the client's
    (the tunnel always ends the client connection)."""
    client = ctx.stream
    assert isinstance(client, FastStream) and side.head is not None
    await ctx.send(client_switch_head(side.head))
    ctx.status = 101  # (send() notes final heads only) for the access log and metrics
    raw = ctx.service.tunables.idle_timeout
    idle = float(raw) if raw > 0 else None
    activity = _Activity()
    from_client = ctx.http.buffered
    ctx.http.start_tunnel()
    try:
        async with anyio.create_task_group() as tg:
            async def one_way(source: FastStream, sink: FastStream, first: bytes) -> None:
                try:
                    await _pump(source, sink, first, activity, idle)
                except (TimeoutError, anyio.BrokenResourceError, anyio.ClosedResourceError,
                        OSError):
                    tg.cancel_scope.cancel()  # one side broke or all went quiet: end it

            tg.start_soon(one_way, client, backend, from_client)
            tg.start_soon(one_way, backend, client, side.leftover)
    finally:
        backend.abort()
