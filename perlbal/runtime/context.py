"""The contract between the connection loop and the role handlers (one request each).

A client connection is served by ``perlbal.runtime.clientconn``: its
``perlbal.http.ClientSide`` (h11) frames one request head, the loop builds a
:class:`RequestContext` and awaits the role handler chosen from the service's
*current* role::

    async def handle(ctx: RequestContext) -> bool   # may the client connection persist?

Handlers: ``reverse_proxy`` (perlbal.runtime.proxy), ``web_server``
(perlbal.runtime.webserver), ``management`` HTTP pages
(perlbal.runtime.management); ``selector`` routes to one of those.

Invariants a handler relies on / must keep:

* ``ctx.http`` holds the framing of this request: the body is read only with
  :meth:`RequestContext.body_chunks` / :meth:`RequestContext.read_body`, which
  answer ``Expect: 100-continue`` when the body is first wanted, and bound the
  body's arrival by ``idle_timeout`` plus ``client_body_min_rate`` (so a client
  trickling a byte at a time cannot hold the connection); whatever lies past
  the body stays in ``ctx.http`` for the next pipelined request.  If a
  handler returns True without reading the body, the loop skips the rest of it
  (up to a limit) before reading the next head, or closes.
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

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, BinaryIO, Callable, Protocol

import anyio
from anyio.abc import ByteStream

from anyio.abc import SocketAttribute

from perlbal.graph import Graph, Service
from perlbal.http import ClientSide, HttpError, RequestHead, simple_response
from perlbal.http.connection import BODY
from perlbal.runtime import trust
from perlbal.runtime.aio import FastStream
from perlbal.runtime.bodylimit import body_limit

if TYPE_CHECKING:
    from perlbal.interp import Interpreter
    from perlbal.plugins import PluginRegistry
    from perlbal.runtime.stats import RuntimeStats

log = logging.getLogger("perlbal.runtime")

__all__ = ["RequestContext", "ServerHandle", "Handler", "RECV_SIZE", "CONTINUE"]

#: One recv() asks for this much; large reads keep the per-byte cost low.
RECV_SIZE = 262144

#: Default cap on a body read into memory with read_body() (10 MiB).
DEFAULT_BODY_LIMIT = 10 * 1024 * 1024

#: The interim reply Perl writes for ``Expect: 100-continue`` (ClientProxy, ClientHTTP).
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ServerHandle(Protocol):
    """What a handler may see of the running server (``perlbal.runtime.server.Runtime``)."""

    @property
    def graph(self) -> Graph: ...

    @property
    def interp(self) -> "Interpreter": ...

    @property
    def live(self) -> "RuntimeStats": ...

    def handler_for(self, role: str | None) -> "Handler | None":
        """The role handler (``clientconn.handler_for``), for a request a plugin
        hands to another service."""
        ...

    def queue_stats(self, service: str) -> tuple[int, int, int, int]:
        """A service's backend queues: normal length and oldest wait, high-priority
        length and oldest wait."""
        ...

    async def refresh_numbers(self) -> None:
        """SERVER workers: gather every worker's numbers before a page shows them."""
        ...


@dataclass
class RequestContext:
    """One request on one client connection, handed to a role handler."""

    service: Service
    head: RequestHead
    stream: ByteStream
    peer_ip: str
    server: ServerHandle
    #: the framing of this request and of what follows it on the connection (h11)
    http: ClientSide
    peer_port: int = 0
    #: the service whose listener accepted the connection (differs from
    #: ``service`` after a selector routed the request)
    listener_service: Service | None = None
    #: set by send()/send_simple(): something of the response reached the client
    response_started: bool = False
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
    #: when the head had been read (time.monotonic(); the context is made right
    #: after): buffer_uploads times a body's rate from here, as Perl does
    #: (start_buffering_request runs in the event that parsed the head)
    head_read_at: float = field(default_factory=time.monotonic)
    #: when the body was first waited for (the min-rate deadline starts there)
    _body_started: float | None = field(default=None, repr=False)

    # --- keep-alive -----------------------------------------------------------

    @property
    def keep_alive(self) -> bool:
        """Perl's ``persist_client && req_keep_alive``, before the response is known.

        A response whose length is unknown must still close: see
        ``perlbal.http.client_keep_alive`` for the full rule.
        """
        return self.persist_client and self.head.wants_keep_alive

    @property
    def persist_client(self) -> bool:
        """persist_client of the service that decides it, unless this request's
        framing forbids another on the connection (an HTTP/1.0 chunked body:
        RFC 9112 section 6.1).  A request that came through a selector follows
        the selector's persist_client, not the selected service's (Perl's
        setup_keepalive reads ``selector_svc || service``)."""
        listener = self.listener_service
        svc = listener if listener is not None and listener.role == "selector" else self.service
        return svc.tunables.persist_client and not self.http.must_close

    @property
    def idle_timeout(self) -> int:
        """What ``Keep-Alive: timeout=N`` announces (persist_client_idle_timeout)."""
        return self.service.tunables.persist_client_idle_timeout

    @property
    def server_tokens(self) -> bool:
        return self.service.tunables.server_tokens

    # --- what plugins may ask of the server (perlbal.plugins.view.RequestView) ----

    def observed_ip(self) -> str | None:
        return trust.observed_ip(self.service, self.peer_ip, self.head.get("X-Forwarded-For"))

    def trusted_peer(self) -> bool:
        return trust.trusted(self.service, self.peer_ip)

    def local_port(self) -> int:
        local = self.stream.extra(SocketAttribute.local_address, None)
        return int(local[1]) if isinstance(local, tuple) and len(local) > 1 else 0

    def is_tls(self) -> bool:
        transport = getattr(self.stream, "_transport", None)
        return transport is not None and transport.get_extra_info("ssl_object") is not None

    def queue_stats(self) -> tuple[int, int, int, int]:
        return self.server.queue_stats(self.service.name)

    def service_named(self, name: str) -> Service | None:
        return self.server.graph.services.get(name)

    async def adopt(self, svc: Service) -> bool:
        self.service = svc
        handler = self.server.handler_for(svc.role)
        if handler is None:
            return await self.send_simple(500, f"Can't map to service type {svc.role}")
        return await handler(self)

    def plugin_registry(self) -> "PluginRegistry | None":
        return getattr(self.server.interp, "plugins", None)

    async def send_file(self, fh: BinaryIO, offset: int, count: int) -> None:
        from perlbal.runtime.diskio import send_file

        await send_file(self, fh, offset, count)

    # --- body -------------------------------------------------------------------

    async def _recv(self, timeout: float | None = None) -> bytes:
        try:
            stream = self.stream
            if isinstance(stream, FastStream):
                return await stream.receive(RECV_SIZE, timeout=timeout)
            with anyio.fail_after(timeout):
                return await stream.receive(RECV_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return b""

    @property
    def body_done(self) -> bool:
        """The whole request body has been read (or there was none)."""
        return self.http.state != BODY

    def _body_deadline(self) -> float | None:
        """When the body must have arrived: ``idle_timeout`` from the first wait,
        pushed back one second per ``client_body_min_rate`` bytes received (Apache's
        mod_reqtimeout MinRate, HAProxy's timeout http-request): a byte now and
        then cannot keep the connection, unlike Perl, where any byte restarted
        the idle timer."""
        if self._body_started is None:
            self._body_started = time.monotonic()
        idle = self.service.tunables.idle_timeout
        if idle <= 0:
            return None
        rate = self.service.tunables.client_body_min_rate
        grace = self.http.body_size / rate if rate > 0 else float("inf")
        if grace == float("inf"):
            return time.monotonic() + idle  # per-read timeout, as Perl
        return self._body_started + idle + grace

    async def body_chunks(self, max_size: int | None = None,
                          stop_after: int | None = None) -> AsyncIterator[bytes]:
        """Yield the decoded request body piece by piece (back-pressure: one recv each).
        ``stop_after``: stop once that many bytes were yielded (a Content-Length
        body exactly there; a chunked one may overshoot by one piece).

        Raises ``HttpError`` (400 bad chunking, 413 over ``max_size`` or over
        the request's own limit, ``bodylimit.body_limit``: max_chunked_request_size,
        max_put_size, max_content_length; 408 when the body is too slow: see
        ``_body_deadline``) and ``anyio.EndOfStream`` if the client disconnects
        mid-body.  A piece that crosses a limit is never yielded.
        """
        http = self.http
        given = 0
        limit = body_limit(self.service, self.head, self.listener_service)
        while stop_after is None or given < stop_after:
            piece = http.next_body(None if stop_after is None else stop_after - given)
            if piece is None:
                if http.take_continue():
                    await self._send_continue()
                deadline = self._body_deadline()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise HttpError(408, "request body too slow")
                try:
                    data = await self._recv(left)
                except TimeoutError:
                    raise HttpError(408, "request body too slow") from None
                if not data:
                    raise anyio.EndOfStream
                http.receive_data(data)
                continue
            if not piece:
                return
            if max_size is not None and http.body_size > max_size:
                raise HttpError(413, "request body too large")
            if limit is not None and http.body_size > limit.size:
                log.info("client %s on %s: request body refused: over %s (%d bytes)",
                         self.peer_ip, self.service.name, limit.parameter, limit.size)
                raise HttpError(413, limit.reason)
            given += len(piece)
            yield piece

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
        await self._write(data, more)

    async def _send_continue(self) -> None:
        """The interim ``100 Continue``: not the response (``response_started``
        stays False, so a handler may still answer, e.g. 503 for no backend)."""
        await self._write(CONTINUE, False)

    async def _write(self, data: bytes, more: bool) -> None:
        stream = self.stream
        if isinstance(stream, FastStream):
            timeout = self.service.tunables.idle_timeout
            await stream.send(data, timeout=timeout if timeout > 0 else None, more=more)
        else:
            await stream.send(data)

    def _note_head(self, data: bytes) -> None:
        if (data[:5] == b"HTTP/" and data[12:13] in (b" ", b"\r") and data[9:12].isdigit()
                and data[9:10] != b"1"):  # an interim 1xx is not the response
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
