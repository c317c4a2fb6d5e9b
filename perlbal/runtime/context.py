"""The contract between the connection loop and the role handlers (one request each).

A client connection is served by ``perlbal.runtime.clientconn``: it reads one
request head with ``perlbal.http.HeadReader``, builds a :class:`RequestContext`
and awaits the role handler chosen from the service's *current* role::

    async def handle(ctx: RequestContext) -> bool   # may the client connection persist?

Handlers: ``reverse_proxy`` (perlbal.runtime.proxy), ``web_server``
(perlbal.runtime.webserver, written separately), ``management`` HTTP pages
(perlbal.runtime.management); ``selector`` routes to one of those.

Invariants a handler relies on / must keep:

* ``ctx.leftover`` holds the bytes already read past the head.  The body must be
  read with :meth:`RequestContext.body_chunks` or :meth:`RequestContext.read_body`
  (they honour Content-Length / chunked framing and consume ``leftover``);
  whatever lies past the body stays in ``ctx.leftover`` for the next pipelined
  request.  If a handler returns True without reading the body, the loop skips
  the rest of it (up to a limit) before reading the next head, or closes.
* A handler that returns True must have sent a whole response whose length the
  client can find (so the connection can carry the next request); it should
  return ``ctx.keep_alive`` or something stricter.  Returning False closes.
* Handlers never let an exception carry a traceback to a client: an
  ``HttpError`` raised from a handler is answered with Perl's simple page (if
  nothing was sent yet) by the loop; anything else is logged once and closes.
* Responses to clients are HTTP/1.0 (Perl's ``setup_keepalive``), so their
  bodies are delimited by Content-Length or by closing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Protocol

import anyio
from anyio.abc import ByteStream

from perlbal.graph import Graph, Service
from perlbal.http import ChunkedDecoder, HttpError, RequestHead, simple_response
from perlbal.runtime.netstream import FastStream

if TYPE_CHECKING:
    from perlbal.interp import Interpreter
    from perlbal.runtime.stats import RuntimeStats

__all__ = ["RequestContext", "ServerHandle", "Handler", "RECV_SIZE", "BodyState"]

#: One recv() asks for this much; large reads keep the per-byte cost low.
RECV_SIZE = 262144

#: Default cap on a body read into memory with read_body() (10 MiB).
DEFAULT_BODY_LIMIT = 10 * 1024 * 1024


class ServerHandle(Protocol):
    """What a handler may see of the running server (``perlbal.runtime.server.Runtime``)."""

    @property
    def graph(self) -> Graph: ...

    @property
    def interp(self) -> "Interpreter": ...

    @property
    def live(self) -> "RuntimeStats": ...


@dataclass
class BodyState:
    """Where the request body stands: exactly one of the framings applies."""

    remaining: int = 0  # Content-Length bytes still to read
    decoder: ChunkedDecoder | None = None
    done: bool = True
    size: int = 0  # decoded bytes handed out so far


@dataclass
class RequestContext:
    """One request on one client connection, handed to a role handler."""

    service: Service
    head: RequestHead
    stream: ByteStream
    peer_ip: str
    server: ServerHandle
    leftover: bytes = b""
    peer_port: int = 0
    #: the service whose listener accepted the connection (differs from
    #: ``service`` after a selector routed the request)
    listener_service: Service | None = None
    #: set by send()/send_simple(): something of the response reached the client
    response_started: bool = False
    body: BodyState = field(default_factory=BodyState)
    #: the response status sent (0: none yet), and its head's length, noted by
    #: send() from the first bytes of the response (access log and metrics)
    status: int = 0
    head_length: int = 0
    # --- plugin hooks (perlbal.plugins.hooks) ---
    #: per-request plugin state, Perl's ``$client->{scratch}``
    scratch: dict[str, Any] = field(default_factory=dict)
    #: AccessControl's queue_low (or make_low_priority) chose the low-priority queue
    queue_low: bool = False
    #: the request waits / waited in the high-priority queue (cookie or make_high_priority)
    high_priority: bool = False
    #: the keep-alive decision of the last response sent with send_simple /
    #: send_full_response; what a call site returns after a plugin answered
    last_keep_alive: bool = False

    def __post_init__(self) -> None:
        head = self.head
        if head.chunked:
            limit = self.service.get("max_chunked_request_size", 209715200)
            max_size = limit if isinstance(limit, int) else 209715200
            self.body = BodyState(decoder=ChunkedDecoder(max_body_size=max_size), done=False)
        elif head.content_length:
            self.body = BodyState(remaining=head.content_length, done=False)

    # --- keep-alive -----------------------------------------------------------

    @property
    def keep_alive(self) -> bool:
        """Perl's ``persist_client && req_keep_alive``, before the response is known.

        A response whose length is unknown must still close: see
        ``perlbal.http.client_keep_alive`` for the full rule.
        """
        return bool(self.service.get("persist_client", False)) and self.head.wants_keep_alive

    @property
    def idle_timeout(self) -> int:
        """What ``Keep-Alive: timeout=N`` announces (persist_client_idle_timeout)."""
        value = self.service.get("persist_client_idle_timeout", 30)
        return int(value) if isinstance(value, int) else 30

    @property
    def server_tokens(self) -> bool:
        return bool(self.service.get("server_tokens", True))

    # --- body -------------------------------------------------------------------

    async def _recv(self) -> bytes:
        try:
            return await self.stream.receive(RECV_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return b""

    async def body_chunks(self, max_size: int | None = None) -> AsyncIterator[bytes]:
        """Yield the decoded request body piece by piece (back-pressure: one recv each).

        Raises ``HttpError`` (400 bad chunking, 413 over ``max_size``) and
        ``anyio.EndOfStream`` if the client disconnects mid-body.
        """
        body = self.body
        while not body.done:
            if self.leftover:
                data, self.leftover = self.leftover, b""
            else:
                data = await self._recv()
                if not data:
                    raise anyio.EndOfStream
            if body.decoder is not None:
                pieces = body.decoder.feed(data)
                if body.decoder.done:
                    body.done = True
                    self.leftover = body.decoder.unused_data
                for piece in pieces:
                    body.size += len(piece)
                    if max_size is not None and body.size > max_size:
                        raise HttpError(413, "request body too large")
                    if piece:
                        yield piece
            else:
                if len(data) > body.remaining:
                    self.leftover = data[body.remaining:]
                    data = data[: body.remaining]
                body.remaining -= len(data)
                body.size += len(data)
                if body.remaining == 0:
                    body.done = True
                if max_size is not None and body.size > max_size:
                    raise HttpError(413, "request body too large")
                if data:
                    yield data

    async def read_body(self, limit: int = DEFAULT_BODY_LIMIT) -> bytes:
        """The whole (decoded) body in memory; HttpError(413) past ``limit`` bytes."""
        parts = [piece async for piece in self.body_chunks(limit)]
        return b"".join(parts)

    async def skip_body(self, limit: int = 1024 * 1024) -> bool:
        """Discard an unread body; False when it is too big to skip (then close)."""
        try:
            async for _ in self.body_chunks(limit):
                pass
        except (HttpError, anyio.EndOfStream):
            return False
        return True

    # --- sending ----------------------------------------------------------------

    async def send(self, data: bytes, *, more: bool = False) -> None:
        """Write bytes to the client; a vanished client raises anyio.BrokenResourceError.
        ``more``: the caller sends more at once (see FastStream.send).

        A client that accepts nothing for ``idle_timeout`` seconds while we
        wait to write is cut off (BrokenResourceError as well): a slow or
        stalled reader cannot pin its buffers and descriptor for ever.
        """
        self.response_started = True
        if self.status < 200:  # the final head (an interim 100 Continue is passed over)
            self._note_head(data)
        stream = self.stream
        if isinstance(stream, FastStream):
            timeout = self.service.params.get("idle_timeout", 30)
            await stream.send(data, timeout=timeout if isinstance(timeout, int) and timeout > 0
                              else None, more=more)
        else:
            await stream.send(data)

    def _note_head(self, data: bytes) -> None:
        if data[:5] == b"HTTP/" and data[12:13] in (b" ", b"\r") and data[9:12].isdigit():
            self.status = int(data[9:12])
            end = data.find(b"\r\n\r\n")
            self.head_length = end + 4 if end >= 0 else len(data)

    async def send_simple(self, status: int, message: str | None = None,
                          *, keep_alive: bool | None = None) -> bool:
        """Perl's ``_simple_response``; returns the keep-alive decision it announced."""
        persist = self.keep_alive if keep_alive is None else keep_alive
        data = simple_response(status, message, keep_alive=persist,
                               idle_timeout=self.idle_timeout,
                               server_tokens=self.server_tokens,
                               head_request=self.head.method == "HEAD")
        await self.send(data)
        self.last_keep_alive = persist
        return persist

    async def send_full_response(self, status: int, headers: list[tuple[str, str]] | tuple[
            tuple[str, str], ...] = (), body: bytes | None = b"", *,
            keep_alive: bool | None = None) -> bool:
        """Perl's ``send_full_response``: ``headers`` in order (a repeated name
        replaces the earlier value), Content-Length of ``body`` (none for
        204/304), Server, then the keep-alive headers; for plugins' answers
        that need their own headers (Redirect's Location)."""
        from perlbal.http.responses import SERVER_TOKEN, keep_alive_headers, render_head

        out: list[tuple[str, str]] = []

        def put(name: str, value: str) -> None:
            for i, (key, _) in enumerate(out):
                if key.lower() == name.lower():
                    out[i] = (key, value)
                    return
            out.append((name, value))

        for name, value in headers:
            put(name, value)
        if status in (204, 304):
            out = [(k, v) for k, v in out if k.lower() != "content-length"]
            body = None
        elif body is not None:
            put("Content-Length", str(len(body)))
        if self.server_tokens:
            put("Server", SERVER_TOKEN)
        persist = self.keep_alive if keep_alive is None else keep_alive
        out.extend(keep_alive_headers(persist, self.idle_timeout))
        data = render_head(status, out)
        if body and self.head.method != "HEAD":
            data += body
        await self.send(data)
        self.last_keep_alive = persist
        return persist


Handler = Callable[[RequestContext], Awaitable[bool]]
