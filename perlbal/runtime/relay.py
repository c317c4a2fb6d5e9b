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

from perlbal.http import BackendProtocolError, ChunkedDecoder, HttpError
from perlbal.runtime.context import RECV_SIZE, RequestContext
from perlbal.runtime.netstream import FastStream

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


async def pump_body(stream: FastStream, buf: ByteBuffer, leftover: bytes,
                    content_length: int | None, chunked: bool, timeout: float | None,
                    peer: str = "backend") -> bool:
    """Read one reply body from ``stream`` into ``buf``, framed by chunking, by
    Content-Length, or (neither) by the peer closing.  Returns True when it
    ended exactly where it should (the connection may carry another reply).
    Raises BackendProtocolError (named after ``peer``) on a body that is cut
    short or overlong, TimeoutError after ``timeout`` seconds of silence, and
    the stream's own errors."""
    remaining = content_length
    decoder = ChunkedDecoder(max_body_size=0) if chunked else None
    data = leftover
    while True:
        if data:
            if decoder is not None:
                for piece in decoder.feed(data):
                    await buf.put(piece)
                if decoder.done:
                    return not decoder.unused_data
            elif remaining is not None:
                if len(data) > remaining:
                    raise BackendProtocolError(f"{peer} sent more than Content-Length")
                remaining -= len(data)
                await buf.put(data)
                if remaining == 0:
                    return True
            else:
                await buf.put(data)
        try:
            data = await stream.receive(RECV_SIZE, timeout=timeout)
        except anyio.EndOfStream:
            data = b""
        if not data:
            if remaining is None and decoder is None:
                return False  # delimited by the close: not reusable
            raise BackendProtocolError(f"{peer} closed mid-body")


async def relay_body(ctx: RequestContext, head_bytes: bytes, buf: ByteBuffer,
                     stream: FastStream, leftover: bytes, content_length: int | None,
                     chunked: bool, timeout: float | None, peer: str,
                     release: Callable[[bool], None], drop: Callable[[], None]) -> bool:
    """Send ``head_bytes`` and then the reply body to the client, while a reader
    task reads the body ahead into ``buf`` (``pump_body``).  Once the body has
    ended, ``release(clean)`` hands the peer connection back; if the body breaks,
    or the client goes away first, ``drop()`` closes it.  True when the client
    got the whole body."""
    settled = False  # the reader released or dropped the connection

    async def read() -> None:
        nonlocal settled
        try:
            clean = await pump_body(stream, buf, leftover, content_length, chunked, timeout, peer)
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
    return buf.error is None
