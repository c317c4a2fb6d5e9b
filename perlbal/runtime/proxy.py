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
   in order, for ``idle_timeout`` seconds at most (then 503); a client whose
   connection is lost (reset) while waiting, or while its backend thinks,
   frees it at once.  A FIN is a half-close, not a withdrawal: a complete
   request is answered (the web server does the same, docs/http.md);
3. the reply (BackendHTTP's half) is read and relayed by
   ``proxyreply.relay_reply``.

Failures: no node in the pool -> 503 at once; nodes that refuse -> the client
waits for another node (Perl's queue) up to idle_timeout, then 503; a request
that cannot be sent -> 502.  A reused idle connection that fails before any
reply byte is retried on another connection when the request can be replayed.
``enable_error_retries``: a 500 reply to GET/HEAD is thrown away and the
request asked again after each ``error_retry_schedule`` delay.  A backend that
saw any failure is closed, never parked.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote_plus

import anyio
from anyio.abc import SocketAttribute

from perlbal import nodefile
from perlbal.graph import Pool, Service
from perlbal.http import HttpError, backend_request_headers, backend_request_line, render_head, \
    set_header
from perlbal.http.fields import UnsafeField, render_fields
from perlbal.http.proxyproto import encode_v1, encode_v2
from perlbal.http.upgrade import backend_upgrade_head, relayed_protocols
from perlbal.plugins.hooks import (BackendClientAssigned, EndProxyRequest, MakeHighPriority,
                                   MakeLowPriority, ProxyReadRequest, StartHttpRequest,
                                   StartProxyRequest, fire)
from perlbal.runtime import proxyreply, reproxy, trust, upload_tracker, uploads
from perlbal.runtime.aio import FastStream, PeerGone
from perlbal.runtime.backends import HIGH, LOW, NORMAL, BackendConn
from perlbal.runtime.context import RequestContext
from perlbal.runtime.proxyreply import ErrorRetry, Retry, fail, log_fault
from perlbal.runtime.relay import BROKEN

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

#: A chunked upload larger than this is spooled to disk before it goes to a backend.
CHUNKED_IN_MEMORY = 1024 * 1024

log = logging.getLogger("perlbal.runtime")

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


def _high_priority(svc: Service, ctx: RequestContext) -> bool:
    r"""Perl's request_backend_connection cookie rule, quirks included.

    Cookies are split on ``;\s+`` and each piece on its last ``=`` (``/(.*)=(.*)/``),
    both sides URL-decoded; the request is high priority when the named cookie's
    value (or "") contains high_priority_cookie_contents -- and an unset
    contents is the empty string, which every value contains.
    """
    name = svc.tunables.high_priority_cookie
    if not name:
        return False
    cookies: dict[str, str] = {}
    for piece in re.split(r";\s+", ctx.head.get("Cookie") or ""):
        match = re.match(r"(.*)=(.*)", piece)
        if match is not None:
            cookies[unquote_plus(match.group(1))] = unquote_plus(match.group(2))
    contents = svc.tunables.high_priority_cookie_contents
    return str(contents or "") in (cookies.get(name) or "")


def _upgrading(ctx: RequestContext) -> tuple[str, ...]:
    """The protocols of the client's Upgrade the service relays (allow_upgrade,
    upgrade_protocols; perlbal.http.upgrade); empty: an ordinary request."""
    tunables = ctx.service.tunables
    if not tunables.allow_upgrade:
        return ()
    return relayed_protocols(ctx.head, tunables.upgrade_protocols)


def _listener(ctx: RequestContext) -> tuple[str, int] | None:
    """``forwarded_headers = sanitize``: the scheme and port the client reached,
    for X-Forwarded-Proto / -Port (perlbal.http.proxyheaders); None: Perl's way."""
    if ctx.service.tunables.forwarded_headers == "perl":
        return None
    return ("https" if ctx.is_tls() else "http", ctx.local_port())


def _backend_head(ctx: RequestContext, body_length: int | None) -> bytes:
    svc = ctx.service
    head = ctx.head
    rules = svc.headers
    upgrade = _upgrading(ctx)
    if upgrade:  # (perlbal.http.upgrade) HTTP/1.1, Upgrade naming what we relay
        return backend_upgrade_head(
            head, upgrade, client_ip=ctx.peer_ip, trusted=trust.trusted(svc, ctx.peer_ip),
            blind_proxy=svc.tunables.blind_proxy,
            enable_reproxy=svc.tunables.enable_reproxy,
            remove=rules.remove, insert=rules.insert, listener=_listener(ctx))
    # (any other Upgrade, HTTP2-Settings and their Connection tokens are hop-by-hop: dropped)
    headers = backend_request_headers(
        head.headers, client_ip=ctx.peer_ip, trusted=trust.trusted(svc, ctx.peer_ip),
        blind_proxy=svc.tunables.blind_proxy,
        persist_backend=svc.tunables.persist_backend,
        enable_reproxy=svc.tunables.enable_reproxy,
        remove=rules.remove, insert=rules.insert, listener=_listener(ctx))
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
    # what follows the head (body bytes read before a backend was asked for,
    # buffer_backend_connect) goes on to the backend after the new head
    return ((lines[0] + "\r\n").encode("latin-1") + render_fields(hook.headers) + b"\r\n"
            + request_head[end + 4:])


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
        except Retry:
            # a pooled connection the backend closed as we reused it: an idempotent
            # request is sent once more on a fresh connection; anything else (a
            # POST) never twice (RFC 9110 section 9.2.2)
            runtime.backends.discard(conn)
            stale_retries += 1
            if ((replay_body is None and spool is None) or stale_retries > 1
                    or ctx.head.method not in _IDEMPOTENT):
                log_fault(ctx, None, "the backend connection broke again on the retry", 502)
                return await fail(ctx, 502)
        except ErrorRetry:
            runtime.backends.discard(conn)
            assert schedule is not None
            delay = schedule[error_retries]
            error_retries += 1
            if delay > 0:
                await anyio.sleep(delay)


def _queue_timeout(svc: Service) -> float | None:
    """How long a client may wait for a backend: its idle_timeout (Perl's idle kill)."""
    value = svc.tunables.idle_timeout
    return float(value) if value > 0 else None


async def _read_prefix(ctx: RequestContext, limit: int) -> bytes:
    """Up to ``limit`` bytes of the request body (all of it if shorter)."""
    parts: list[bytes] = []
    size = 0
    async for piece in ctx.body_chunks(stop_after=limit):
        parts.append(piece)
        size += len(piece)
    return b"".join(parts)


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
    backends = runtime.backends
    try:
        assigned = await _backend_client_assigned(ctx, conn, request_head)
    except UnsafeField as exc:
        backends.discard(conn)
        log_fault(ctx, conn.ipport, f"a plugin made the request head unsafe: {exc}", 500)
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
    except BROKEN as exc:
        if conn.reused:
            raise Retry
        backends.discard(conn)
        log_fault(ctx, conn.ipport, f"sending the request failed: {exc!r}", 502)
        return await fail(ctx, 502)
    return await proxyreply.relay_reply(runtime, ctx, conn, upgrade=_upgrading(ctx),
                                        may_retry_500=may_retry_500)


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
