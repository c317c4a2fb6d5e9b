"""The ``reverse_proxy`` role: one client request relayed to one backend node.

Perl's ClientProxy + BackendHTTP, per request:

1. headers for the backend are rewritten by ``perlbal.http.backend_request_headers``
   (HTTP/1.0 request line, Connection per persist_backend, X-Forwarded-For and
   friends per trusted_upstream_proxies / always_trusted / blind_proxy, HEADER
   rules); a chunked upload is read (max_chunked_request_size) and sent with
   a Content-Length, since backends are spoken to in HTTP/1.0: up to
   ``CHUNKED_IN_MEMORY`` bytes in memory, beyond that spooled to disk as
   buffered uploads are, so a client cannot pin 200 MB of RAM per connection;
2. a request body up to ``buffer_backend_connect`` bytes is read before a
   backend is asked for; then a connection comes from
   ``backends.BackendManager.acquire``: a bored one, or after waiting in the
   service's high-priority (high_priority_cookie[_contents]) or normal queue,
   in order, for ``idle_timeout`` seconds at most (then 503); a client that
   disconnects while waiting, or while its backend thinks, frees it at once;
3. the reply is framed by ``perlbal.http.BackendSide`` (h11); its head goes to
   the client as HTTP/1.0 with Perl's keep-alive decision; the body is
   relayed through ``relay.ByteBuffer``: a reader task
   runs up to ``buffer_size`` ahead of the client, so the backend is released
   (parked or closed) as soon as the whole reply is read.

Failures: no node in the pool -> 503 at once; nodes that refuse -> the client
waits for another node (Perl's queue) up to idle_timeout, then 503; a backend
that resets, sends garbage or stays silent -> 502 / 504 when nothing was sent
to the client yet, else the client is closed.  A reused idle connection that
fails before any reply byte is retried on another connection when the request
can be replayed.  ``enable_error_retries``: a 500 reply to GET/HEAD is thrown
away and the request asked again after each ``error_retry_schedule`` delay.
A backend that saw any failure is closed, never parked.
"""

from __future__ import annotations

import re
import time
from urllib.parse import unquote_plus
from typing import TYPE_CHECKING, cast

import anyio
import logging

from perlbal.http import (
    BackendProtocolError,
    BackendSide,
    HttpError,
    ResponseHead,
    backend_keep_alive,
    backend_request_headers,
    backend_request_line,
    client_keep_alive,
    client_response_headers,
    render_head,
    set_header,
)
from anyio.abc import SocketAttribute

from perlbal import nodefile
from perlbal.graph import Pool, Service
from perlbal.plugins.hooks import (BackendClientAssigned, BackendResponseReceived,
                                   EndProxyRequest, MakeHighPriority, MakeLowPriority,
                                   ModifyResponseHeaders, PrependBody, StartHttpRequest,
                                   ProxyReadRequest, StartProxyRequest, fire)
from perlbal.runtime.backends import HIGH, LOW, NORMAL, BackendConn
from perlbal.runtime.aio import FastStream, PeerGone
from perlbal.http.fields import UnsafeField, render_fields
from perlbal.http.proxyproto import encode_v1, encode_v2
from perlbal.http.upgrade import backend_upgrade_head, wants_upgrade
from perlbal.runtime.context import RECV_SIZE, RequestContext
from perlbal.runtime.relay import BROKEN, ByteBuffer, relay_body
from perlbal.runtime import reproxy, trust, tunnel, upload_tracker, uploads

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

#: Default seconds a backend may take to start answering, or stay silent in a reply
#: body; the service's backend_response_timeout overrides it.
BACKEND_RESPONSE_TIMEOUT = 60.0

#: A chunked upload larger than this is spooled to disk before it goes to a backend.
CHUNKED_IN_MEMORY = 1024 * 1024


def backend_timeout(svc: Service) -> float | None:
    """How long a backend may stay silent, before or within its reply (None: no
    limit): the smaller of backend_response_timeout and idle_timeout.  In Perl
    the client's idle_timeout ends the wait (its socket sees no traffic while the
    backend thinks) and the client is closed without a word; here it gets 504
    before the reply head, and a cut connection after."""
    limits = [float(seconds) for seconds in (svc.tunables.backend_response_timeout,
                                             svc.tunables.idle_timeout) if seconds > 0]
    return min(limits) if limits else None

_BROKEN = BROKEN


log = logging.getLogger("perlbal.runtime")

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

#: what the client reads when the backend fails it (Perl sends no page: it hangs or closes)
_FAIL_REASONS = {
    502: "Bad gateway: the backend's reply was malformed, cut short or reset",
    504: "Gateway timeout: the backend did not answer in time",
}


class _Retry(Exception):
    """A reused backend connection died before answering; try a fresh one."""


class _ErrorRetry(Exception):
    """enable_error_retries: the backend answered 500 to a GET/HEAD; ask another one."""




def _high_priority(svc: Service, ctx: RequestContext) -> bool:
    r"""Perl's request_backend_connection cookie rule, quirks included.

    Cookies are split on ``;\s+`` and each piece on its last ``=`` (``/(.*)=(.*)/``),
    both sides URL-decoded; the request is high priority when the named cookie's
    value (or "") contains high_priority_cookie_contents -- and an unset
    contents is the empty string, which every value contains.
    """
    name = svc.tunables.high_priority_cookie
    if not isinstance(name, str) or not name:
        return False
    cookies: dict[str, str] = {}
    for piece in re.split(r";\s+", ctx.head.get("Cookie") or ""):
        match = re.match(r"(.*)=(.*)", piece)
        if match is not None:
            cookies[unquote_plus(match.group(1))] = unquote_plus(match.group(2))
    contents = svc.tunables.high_priority_cookie_contents
    return str(contents or "") in (cookies.get(name) or "")


def _upgrading(ctx: RequestContext) -> bool:
    """The request asks to switch protocols and the service relays upgrades."""
    return bool(ctx.service.tunables.allow_upgrade) and wants_upgrade(ctx.head)


def _backend_head(ctx: RequestContext, body_length: int | None) -> bytes:
    svc = ctx.service
    head = ctx.head
    rules = svc.headers
    if _upgrading(ctx):  # (perlbal.http.upgrade) HTTP/1.1, Upgrade kept
        return backend_upgrade_head(
            head, client_ip=ctx.peer_ip, trusted=trust.trusted(svc, ctx.peer_ip),
            blind_proxy=bool(svc.tunables.blind_proxy),
            enable_reproxy=bool(svc.tunables.enable_reproxy),
            remove=rules.remove, insert=rules.insert)
    headers = backend_request_headers(
        head.headers, client_ip=ctx.peer_ip, trusted=trust.trusted(svc, ctx.peer_ip),
        blind_proxy=bool(svc.tunables.blind_proxy),
        persist_backend=bool(svc.tunables.persist_backend),
        enable_reproxy=bool(svc.tunables.enable_reproxy),
        remove=rules.remove, insert=rules.insert)
    if head.chunked:
        headers = set_header(headers, "Content-Length", str(body_length or 0))
    if head.get("Expect") is not None:
        headers = set_header(headers, "Expect", None)
    # checked on the way out (UnsafeField): no plugin or rule may split the head
    return backend_request_line(head.method, head.target) + render_fields(headers) + b"\r\n"


def _retry_schedule(svc: Service) -> list[float]:
    text = svc.tunables.error_retry_schedule
    out: list[float] = []
    for part in str(text).split(","):
        try:
            out.append(float(part.strip() or 0))
        except ValueError:
            out.append(0.0)
    return out


async def handle(ctx: RequestContext) -> bool:
    """Plugin hooks around one proxied request (perlbal.plugins.hooks): Perl's
    ClientProxy runs start_proxy_request then start_http_request before asking
    for a backend, and end_proxy_request when the request is over."""
    try:
        # (no hook objects built for a service without plugins: fire would answer False)
        if ctx.service.plugin_order and (await fire(StartProxyRequest(ctx))
                                         or await fire(StartHttpRequest(ctx))):
            return ctx.last_keep_alive
        if ctx.service.tunables.upload_status_listeners:
            # Perl's handle_upload_tracking: the progress query is answered here
            session = upload_tracker.wants_status(ctx.head.target)
            if session is not None:
                return await _upload_status(ctx, session)
        if _pipelined_without_keep_alive(ctx):
            # Perl's ClientProxy::event_read: bytes after a body-less request
            # "overflow" it; answered 400 and closed before any backend is used
            await ctx.send_simple(400, "Can't pipeline to HTTP/1.0")
            return False
        return await _proxy(ctx)
    finally:
        if ctx.service.plugin_order:
            with anyio.CancelScope(shield=True):
                await fire(EndProxyRequest(ctx))


async def _upload_status(ctx: RequestContext, session: str) -> bool:
    """Perl's reply to ``/__upload_status``: no Server field, the body even to HEAD."""
    from perlbal.http.responses import keep_alive_headers

    body = upload_tracker.status_body(session)
    keep = ctx.keep_alive
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
               *keep_alive_headers(keep, ctx.idle_timeout)]
    await ctx.send(render_head(200, headers) + body)
    return keep


def _pipelined_without_keep_alive(ctx: RequestContext) -> bool:
    """A body-less request on a connection that will not be kept alive, with
    the client's next request already behind it.  (On a kept-alive connection
    pipelined requests are answered in order; Perl answers 400 there too when
    the bytes arrive before its reply is done.)  Empty lines alone are not a
    request (RFC 9112 section 2.2)."""
    if not ctx.body_done or ctx.keep_alive:
        return False
    waiting = ctx.http.buffered
    stream = ctx.stream
    if not waiting.strip(b"\r\n") and isinstance(stream, FastStream) and stream.buffered:
        waiting += bytes(b"".join(stream._protocol.chunks))
    return bool(waiting.strip(b"\r\n"))


async def _priority(svc: Service, ctx: RequestContext) -> int:
    """Perl's request_backend_connection: the cookie, else make_high_priority
    (Highpri); then AccessControl's queue_low, else make_low_priority."""
    hooked = bool(svc.plugin_order)
    if _high_priority(svc, ctx) or (hooked and await fire(MakeHighPriority(ctx))):
        ctx.high_priority = True
        return HIGH
    if ctx.queue_low or (hooked and await fire(MakeLowPriority(ctx))):
        return LOW
    return NORMAL


async def _backend_client_assigned(ctx: RequestContext, conn: BackendConn,
                                   request_head: bytes) -> bytes | None:
    """The backend_client_assigned hook (Stats, Queues, XFFExtras) on the
    request head we rendered: plugins may change its header fields.  None:
    a plugin took the request over (Perl's true return)."""
    if not ctx.service.plugin_order:
        return request_head
    end = request_head.index(b"\r\n\r\n")
    lines = request_head[:end].decode("latin-1").split("\r\n")
    fields = [line.split(": ", 1) for line in lines[1:]]
    hook = BackendClientAssigned(ctx, headers=[(k, v) for k, v in fields],
                                 high_priority=ctx.high_priority, ipport=conn.ipport,
                                 backend=conn.stream)
    if await fire(hook):
        return None
    return (lines[0] + "\r\n").encode("latin-1") + render_fields(hook.headers) + b"\r\n"


async def _proxy(ctx: RequestContext) -> bool:
    runtime = cast("Runtime", ctx.server)
    svc = ctx.service
    pool = runtime.graph.pools.get(svc.pool_name or "")
    head = ctx.head
    if pool is None:
        return await ctx.send_simple(503)
    nodefile.refresh(pool)
    if not pool.nodes:  # Perl would queue the client forever; we answer at once
        return await ctx.send_simple(503)
    # A body the backend can be sent again (retry on a stale idle connection).
    replay_body: bytes | None = None
    prefix = b""  # buffer_backend_connect: body bytes read before asking for a backend
    # upload_status_listeners / buffer_uploads (perlbal.runtime.uploads): progress goes out by
    # UDP, and a slow, large or chunked upload is spooled to disk before a backend is asked for
    uploads.track_upload(ctx)
    spool = (await uploads.spool_upload(ctx)
             if svc.tunables.buffer_uploads and not ctx.body_done else None)
    if spool is not None:
        pass  # the whole body waits on disk
    elif head.chunked:
        # a chunked upload needs its length for an HTTP/1.0 backend: a small one is
        # read into memory, a large one spooled (security: no 200 MB per client)
        replay_body = await _read_prefix(ctx, CHUNKED_IN_MEMORY + 1)
        if not ctx.body_done:
            spool = await uploads.spool_rest(ctx, replay_body, "chunked")
            replay_body = None
    elif not ctx.body_done:
        early = svc.tunables.buffer_backend_connect
        early = early if isinstance(early, int) else 0
        remaining = ctx.http.remaining or 0
        if len(ctx.http.buffered) >= remaining or remaining <= early:
            replay_body = await ctx.read_body()
        elif early > 0:
            prefix = await _read_prefix(ctx, early)
    else:
        replay_body = b""
    try:
        request_head = _backend_head(ctx, len(replay_body) if replay_body is not None
                                     else spool.size if spool is not None else None)
    except UnsafeField as exc:
        # a plugin or rule put a control byte (a client's %0d%0a, decoded) in a field
        log.info("client %s on %s: request not forwarded: %s", ctx.peer_ip, svc.name, exc)
        return await ctx.send_simple(400, "request cannot be forwarded: a header field holds "
                                     "a control character", keep_alive=False)
    if prefix:
        request_head += prefix
    # reproxy cache (perlbal.runtime.reproxy): a cached X-REPROXY-URL answer needs no backend
    if replay_body == b"" and not head.chunked:
        cached = await reproxy.serve_from_cache(runtime, ctx)
        if cached is not None:
            return cached

    if svc.plugin_order and (ctx.head.chunked or (head.content_length or 0) > 0) \
            and await fire(ProxyReadRequest(ctx, body=replay_body or prefix)):
        return ctx.last_keep_alive  # Perl's proxy_read_request: the plugin answered
    client = ctx.stream if isinstance(ctx.stream, FastStream) else None
    priority = await _priority(svc, ctx)
    if ctx.response_started:  # a plugin failed choosing the queue and answered 500
        return False
    schedule: list[float] | None = None
    error_retries = 0
    stale_retries = 0
    while True:
        try:
            conn = await runtime.backends.acquire(svc, pool, priority, _queue_timeout(svc), client,
                                                  head, ctx.peer_ip)
        except PeerGone:
            return False  # Perl's client_disconnected while waiting: nothing to answer
        if conn is None:
            return await ctx.send_simple(503, keep_alive=False)
        try:
            if schedule is None and svc.tunables.enable_error_retries:
                schedule = _retry_schedule(svc)
            may_retry = schedule is not None and error_retries < len(schedule)
            return await _exchange(runtime, ctx, conn, request_head, replay_body, may_retry,
                                   spool=spool)
        except _Retry:
            # a pooled connection the backend closed as we reused it: an idempotent
            # request is sent once more on a fresh connection; anything else (a
            # POST) never twice (RFC 9110 section 9.2.2)
            runtime.backends.discard(conn)
            stale_retries += 1
            if ((replay_body is None and spool is None) or stale_retries > 1
                    or ctx.head.method not in _IDEMPOTENT):
                _log_fault(ctx, None, "the backend connection broke again on the retry", 502)
                return await _fail(ctx, 502)
        except _ErrorRetry:
            runtime.backends.discard(conn)
            assert schedule is not None
            delay = schedule[error_retries]
            error_retries += 1
            if delay > 0:
                await anyio.sleep(delay)


def _queue_timeout(svc: Service) -> float | None:
    """How long a client may wait for a backend: its idle_timeout (Perl's idle kill)."""
    value = svc.tunables.idle_timeout
    return float(value) if isinstance(value, int) and value > 0 else None


async def _read_prefix(ctx: RequestContext, limit: int) -> bytes:
    """Up to ``limit`` bytes of the request body (all of it if shorter)."""
    parts: list[bytes] = []
    size = 0
    async for piece in ctx.body_chunks(stop_after=limit):
        parts.append(piece)
        size += len(piece)
    return b"".join(parts)


async def _read_response_head(conn: BackendConn, side: BackendSide, client: FastStream | None,
                              timeout: float | None = BACKEND_RESPONSE_TIMEOUT) -> ResponseHead:
    got_any = False
    stream = conn.stream
    while True:
        try:
            data = await stream.receive(RECV_SIZE, timeout=timeout, watch=client)
        except anyio.EndOfStream:
            data = b""
        except (anyio.BrokenResourceError, OSError):
            if not got_any and conn.reused:
                raise _Retry from None  # a kept-alive connection the backend reset
            raise
        if not data and not got_any and conn.reused:
            raise _Retry
        got_any = True
        side.receive_data(data)
        head = side.next_head()
        if head is not None:
            return head


async def _exchange(runtime: "Runtime", ctx: RequestContext, conn: BackendConn,
                    request_head: bytes, replay_body: bytes | None,
                    may_retry_500: bool = False, spool: uploads.Spool | None = None) -> bool:
    svc = ctx.service
    pool = runtime.graph.pools.get(svc.pool_name or "")
    ipport = conn.ipport
    if pool is not None:
        pool.node_used[ipport] = pool.node_used.get(ipport, 0) + 1
    live = runtime.live
    live.node_requests[ipport] = live.node_requests.get(ipport, 0) + 1
    conn.uses += 1
    method = ctx.head.method
    backends = runtime.backends
    try:
        assigned = await _backend_client_assigned(ctx, conn, request_head)
    except UnsafeField as exc:
        backends.discard(conn)
        _log_fault(ctx, conn.ipport, f"a plugin made the request head unsafe: {exc}", 500)
        await ctx.send_simple(500, keep_alive=False)
        return False
    if assigned is None:  # a plugin took the request over (or failed: 500 sent)
        backends.discard(conn)
        return ctx.last_keep_alive if ctx.response_started else False
    # send_proxy_protocol: the PROXY header goes first on the connection
    request_head = _proxy_header(ctx, pool, conn) + assigned
    # --- send the request ---
    try:
        if spool is not None:  # buffer_uploads: the body comes from the spool file (sendfile)
            await conn.stream.send(request_head)
            await spool.send_to(conn.stream, conn.stream.send)
        elif replay_body is not None:
            await conn.stream.send(request_head + replay_body if replay_body else request_head)
        else:
            await conn.stream.send(request_head)
            conn.reused = False  # the body is being consumed: no replay possible
            try:
                async for piece in ctx.body_chunks():
                    await conn.stream.send(piece)
            except (HttpError, anyio.EndOfStream, anyio.BrokenResourceError,
                    anyio.ClosedResourceError):
                backends.discard(conn)  # client went away mid-upload
                return False
    except _BROKEN as exc:
        if conn.reused:
            raise _Retry
        backends.discard(conn)
        _log_fault(ctx, conn.ipport, f"sending the request failed: {exc!r}", 502)
        return await _fail(ctx, 502)
    live.set_state(conn.sock_id, "wait_res")
    asked = time.monotonic()  # the node's reply time, for the web UI's graphs (timeline.py)
    client = ctx.stream if isinstance(ctx.stream, FastStream) else None
    # --- read the reply head ---
    side = BackendSide(method, upgrade=_upgrading(ctx))
    try:
        resp = await _read_response_head(conn, side, client, backend_timeout(svc))
        first = side.next_body() or b""  # what of the body came with the head
    except _Retry:
        raise
    except PeerGone:
        backends.discard(conn)  # the client left: free the backend at once
        return False
    except TimeoutError:
        backends.discard(conn)
        _log_fault(ctx, conn.ipport, "no reply within backend_response_timeout", 504)
        live.timeline.node_reply(svc.pool_name or "", ipport, 504, None)
        return await _fail(ctx, 504)
    except (BackendProtocolError, *_BROKEN) as exc:
        backends.discard(conn)
        _log_fault(ctx, conn.ipport, str(exc) or repr(exc), 502)
        live.timeline.node_reply(svc.pool_name or "", ipport, 502, None)
        return await _fail(ctx, 502)
    live.timeline.node_reply(svc.pool_name or "", ipport, resp.status, time.monotonic() - asked)
    if resp.status == 101:  # the backend switched protocols: a byte tunnel from here on
        live.node_response(ipport, 101)
        live.node_request_done(ipport)
        try:
            await tunnel.run_tunnel(ctx, conn.stream, side)
        finally:
            backends.discard(conn)
        return False
    live.node_last_response[ipport] = time.time()
    # Perl's NodeStats for ``nodes`` (Perl counts ``requests`` when the body is done)
    live.node_response(ipport, resp.status)
    backends.note_reply(svc, conn, resp.status)  # passive health (max_fails)
    live.node_request_done(ipport)
    # reproxy (perlbal.runtime.reproxy): X-REPROXY-FILE / -URL hand the reply back to us;
    # the primary backend is freed first, as Perl's next_request does
    if svc.tunables.enable_reproxy and reproxy.wants_reproxy(resp):
        backends.release(svc, conn, side.ended_cleanly and backend_keep_alive(resp, method))
        return await reproxy.take_over(runtime, ctx, resp)
    service_name = resp.get("X-REPROXY-SERVICE") if svc.tunables.enable_reproxy else None
    if service_name:
        backends.release(svc, conn, side.done and side.ended_cleanly
                         and backend_keep_alive(resp, method))
        return await _reproxy_service(runtime, ctx, service_name)
    if resp.status == 500 and may_retry_500 and method in ("GET", "HEAD"):
        raise _ErrorRetry  # Perl's should_retry_after_500: the client never sees this reply
    if svc.plugin_order and await fire(BackendResponseReceived(ctx, status=resp.status,
                                                               headers=list(resp.headers))):
        backends.discard(conn)  # a plugin answered the client itself
        return ctx.last_keep_alive
    live.set_state(conn.sock_id, "xfer_res")
    keep = (client_keep_alive(ctx.head, resp.headers, resp.status,
                              persist_client=ctx.persist_client)
            and not runtime.draining)
    out_headers = client_response_headers(resp.headers, keep_alive=keep,
                                          idle_timeout=ctx.idle_timeout)
    has_body = resp.has_body(method)
    if has_body and resp.chunked:
        # de-chunked for an HTTP/1.0 client: no length, so the client connection ends the body
        keep = False
        out_headers = set_header(out_headers, "Connection", "close")
        out_headers = set_header(out_headers, "Keep-Alive", None)
    # plugins may rewrite the head and put bytes before the body (FlvStreaming)
    modify = ModifyResponseHeaders(ctx, status=resp.status, headers=out_headers, backend=True)
    if await fire(modify) and ctx.response_started:  # the plugin failed: 500 sent
        backends.discard(conn)
        return False
    try:
        head_bytes = render_head(modify.status, modify.headers,
                                 resp.reason if modify.status == resp.status else None)
    except UnsafeField as exc:
        backends.discard(conn)
        _log_fault(ctx, conn.ipport, f"reply head cannot be sent: {exc}", 502)
        return await _fail(ctx, 502)
    if ctx.service.plugin_order:
        prepend = PrependBody(ctx)
        await fire(prepend)
        head_bytes += bytes(prepend.data)
    backend_reusable = backend_keep_alive(resp, method)
    # --- fast path: the whole body is already here ---
    if side.done:
        backends.release(svc, conn, backend_reusable and side.ended_cleanly)
        await ctx.send(head_bytes + first if first else head_bytes)
        return keep
    return await _relay(runtime, ctx, conn, side, first, head_bytes, keep, backend_reusable)


async def _reproxy_service(runtime: "Runtime", ctx: RequestContext, name: str) -> bool:
    """X-REPROXY-SERVICE (Perl's start_reproxy_service): the request, as the
    client sent it, is handled anew by the service ``name``; the primary's
    reply is dropped.  A request whose body went to the primary cannot be
    sent again: it gets 502 (Perl would hand the new service a body that
    never comes)."""
    target = runtime.graph.services.get(name)
    if target is None:
        return await ctx.send_simple(404, "Vhost twiddling not configured for requested pair.")
    if ctx.head.chunked or (ctx.head.content_length or 0) > 0:
        _log_fault(ctx, None, f"X-REPROXY-SERVICE {name} for a request with a body", 502)
        return await _fail(ctx, 502)
    return await ctx.adopt(target)


def _proxy_header(ctx: RequestContext, pool: Pool | None, conn: BackendConn) -> bytes:
    """The PROXY protocol header a pool with send_proxy_protocol starts a backend
    connection with (b"" otherwise).  Such a connection is this client's alone:
    it is never handed to another (``BackendConn.dedicated``: released as spent)."""
    version = pool.tunables.send_proxy_protocol if pool is not None else None
    if version not in ("v1", "v2"):
        return b""
    conn.dedicated = True
    if conn.uses > 1:
        return b""  # (not reached: a dedicated connection is not reused)
    server = ctx.stream.extra(SocketAttribute.local_address, None)
    server_ip, server_port = ((str(server[0]), int(server[1])) if isinstance(server, tuple)
                              else ("127.0.0.1", 0))
    client = (ctx.peer_ip or "127.0.0.1", ctx.peer_port)
    if ":" in client[0] and ":" not in server_ip:
        server_ip = "::ffff:" + server_ip
    elif ":" in server_ip and ":" not in client[0]:
        client = ("::ffff:" + client[0], client[1])
    return (encode_v1 if version == "v1" else encode_v2)(client, (server_ip, server_port))


def _log_fault(ctx: RequestContext, ipport: str | None, what: str, status: int) -> None:
    """One line per backend fault, with what an operator needs to find it."""
    log.warning("service %s: backend %s: %s; client %s %s %s gets %d", ctx.service.name,
                ipport or "-", what, ctx.peer_ip, ctx.head.method, ctx.head.target[:200],
                status)


async def _fail(ctx: RequestContext, status: int) -> bool:
    if not ctx.response_started:
        await ctx.send_simple(status, _FAIL_REASONS.get(status), keep_alive=False)
    return False


async def _relay(runtime: "Runtime", ctx: RequestContext, conn: BackendConn, side: BackendSide,
                 first: bytes, head_bytes: bytes, keep: bool, reusable: bool) -> bool:
    svc = ctx.service
    limit = svc.tunables.buffer_size
    buf = ByteBuffer(limit if isinstance(limit, int) else 262144)
    backends = runtime.backends
    whole = await relay_body(
        ctx, head_bytes, buf, conn.stream, side, first, backend_timeout(svc),
        release=lambda clean: backends.release(svc, conn, reusable and clean),
        drop=lambda: backends.discard(conn),
        length_known=side.head is not None and side.head.content_length is not None)
    return keep and whole
