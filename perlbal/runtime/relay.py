"""A bounded byte buffer between a backend reader task and a client writer task.

This is Perl's ``buffer_size`` read-ahead: the reader puts what the backend
sent, pausing once ``limit`` bytes wait unsent; the writer takes everything
buffered at once and writes it to the (possibly slow) client.  So a response
no larger than ``limit`` is read completely, and its backend connection freed,
however slow the client is.

Invariants: ``size`` is the number of bytes put but not yet taken; ``put``
returns only when ``size < limit`` held on entry (one recv may overshoot by its
own length); after ``finish`` or ``fail`` no more ``put`` calls are made;
``take`` returns b"" only at the end (then ``error`` says whether it was clean).
"""

from __future__ import annotations

import weakref
from collections import deque

from typing import Callable

import anyio

from perlbal.http import BackendProtocolError, BackendSide, HttpError
from perlbal.runtime.context import RECV_SIZE, RequestContext
from perlbal.runtime.aio import FastStream

#: what a broken or vanished peer raises on our streams
BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)

#: Buffers of responses being relayed now (the buffer-memory gauge in metrics.py).
LIVE_BUFFERS: "weakref.WeakSet[ByteBuffer]" = weakref.WeakSet()


class ByteBuffer:
    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 1)
        self.size = 0
        self.finished = False
        self.error: str | None = None
        self._chunks: deque[bytes] = deque()
        self._readable = anyio.Event()
        self._writable = anyio.Event()
        LIVE_BUFFERS.add(self)

    async def put(self, data: bytes) -> None:
        while self.size >= self.limit:
            self._writable = anyio.Event()
            await self._writable.wait()
        self._chunks.append(data)
        self.size += len(data)
        self._readable.set()

    def finish(self) -> None:
        self.finished = True
        self._readable.set()

    def fail(self, reason: str) -> None:
        self.error = reason
        self.finish()

    async def take(self) -> bytes:
        while not self._chunks:
            if self.finished:
                return b""
            self._readable = anyio.Event()
            await self._readable.wait()
        if len(self._chunks) == 1:
            data = self._chunks.popleft()
        else:
            data = b"".join(self._chunks)
            self._chunks.clear()
        self.size = 0
        self._writable.set()
        return data


async def pump_body(stream: FastStream, buf: ByteBuffer, side: BackendSide, first: bytes,
                    timeout: float | None) -> bool:
    """Read the rest of one reply body from ``stream`` into ``buf``, framed by
    ``side`` (h11: chunked, Content-Length, or the peer closing); ``first`` is
    the piece already taken from ``side``.  Returns True when the reply ended
    exactly where it should (the connection may carry another one).  Raises
    BackendProtocolError on a body cut short or overlong, TimeoutError after
    ``timeout`` seconds of silence, and the stream's own errors."""
    if first:
        await buf.put(first)
    while True:
        piece = side.next_body()
        if piece is None:
            try:
                data = await stream.receive(RECV_SIZE, timeout=timeout)
            except anyio.EndOfStream:
                data = b""
            side.receive_data(data)
            continue
        if not piece:
            return side.ended_cleanly
        await buf.put(piece)


async def relay_body(ctx: RequestContext, head_bytes: bytes, buf: ByteBuffer,
                     stream: FastStream, side: BackendSide, first: bytes,
                     timeout: float | None,
                     release: Callable[[bool], None], drop: Callable[[], None],
                     length_known: bool = True) -> bool:
    """Send ``head_bytes`` and then the reply body to the client, while a reader
    task reads the body ahead into ``buf`` (``pump_body``).  Once the body has
    ended, ``release(clean)`` hands the peer connection back; if the body breaks,
    or the client goes away first, ``drop()`` closes it.  True when the client
    got the whole body.  A body that breaks is never passed off as whole: when
    the client was given no Content-Length (``length_known`` False: it reads
    to the close) its connection is reset (TCP RST), so it sees an error, not a
    short file; with a length, the close alone tells it the body fell short."""
    settled = False  # the reader released or dropped the connection

    async def read() -> None:
        nonlocal settled
        try:
            clean = await pump_body(stream, buf, side, first, timeout)
        except (BackendProtocolError, HttpError, TimeoutError, *BROKEN) as exc:
            settled = True
            buf.fail(str(exc) or type(exc).__name__)
            drop()
            return
        settled = True
        buf.finish()
        release(clean)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        try:
            await ctx.send(head_bytes)
            while True:
                data = await buf.take()
                if not data:
                    break
                await ctx.send(data)
        except BROKEN:
            tg.cancel_scope.cancel()
            if not settled:
                drop()
            return False
    if buf.error is not None:
        client = ctx.stream
        if not length_known and isinstance(client, FastStream):
            client.reset()
        return False
    return True
