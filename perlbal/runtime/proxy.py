"""The ``reverse_proxy`` role: one client request relayed to one backend node.

Perl's ClientProxy + BackendHTTP, per request:

1. headers for the backend are rewritten by ``perlbal.http.backend_request_headers``
   (HTTP/1.0 request line, Connection per persist_backend, X-Forwarded-For and
   friends per trusted_upstream_proxies / always_trusted / blind_proxy, HEADER
   rules); a chunked upload is read whole (max_chunked_request_size) and sent
   with a Content-Length, since backends are spoken to in HTTP/1.0;
2. a backend is taken from the idle cache (persist_backend) or connected
   (``backends.BackendManager``); while waiting the client is counted in the
   service's normal or high-priority queue (high_priority_cookie[_contents]);
3. the reply head goes to the client as HTTP/1.0 with Perl's keep-alive
   decision; the body is relayed through ``relay.ByteBuffer``: a reader task
   runs up to ``buffer_size`` ahead of the client, so the backend is released
   (parked or closed) as soon as the whole reply is read.

Failures: no node reachable -> 503; a backend that resets, sends garbage or
stays silent -> 502 / 504 when nothing was sent to the client yet, else the
client is closed.  A reused idle connection that fails before any reply byte
is retried once on a fresh connection when the request can be replayed.  A
backend that saw any failure is closed, never parked.
"""

from __future__ import annotations

import ipaddress
import re
import time
from typing import TYPE_CHECKING, cast

import anyio

from perlbal.http import (
    BackendProtocolError,
    ChunkedDecoder,
    HttpError,
    ResponseHead,
    ResponseHeadReader,
    backend_keep_alive,
    backend_request_headers,
    backend_request_line,
    client_keep_alive,
    client_response_headers,
    render_head,
    set_header,
)
from perlbal.graph import Service
from perlbal.runtime.backends import BackendConn
from perlbal.runtime.context import RECV_SIZE, RequestContext
from perlbal.runtime.relay import ByteBuffer

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

#: Seconds a backend may take to start answering (Perl had no limit; we answer 504).
BACKEND_RESPONSE_TIMEOUT = 60.0
#: Seconds of silence tolerated in the middle of a backend's reply body.
BACKEND_IDLE_TIMEOUT = 60.0

_BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)
_netcache: dict[tuple[str, ...], list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}


class _Retry(Exception):
    """A reused backend connection died before answering; try a fresh one."""


def _trusted(svc: Service, peer_ip: str) -> bool:
    if svc.params.get("always_trusted", False):
        return True
    nets = svc.params.get("trusted_upstream_proxies")
    if not isinstance(nets, list) or not nets:
        return False
    key = tuple(nets)
    parsed = _netcache.get(key)
    if parsed is None:
        parsed = _netcache[key] = [ipaddress.ip_network(n, strict=False) for n in nets]
    try:
        addr = ipaddress.ip_address(peer_ip)
    except ValueError:
        return False
    return any(addr in net for net in parsed)


def _high_priority(svc: Service, ctx: RequestContext) -> bool:
    cookie = svc.params.get("high_priority_cookie")
    if not isinstance(cookie, str) or not cookie:
        return False
    header = ctx.head.get("Cookie") or ""
    contents = svc.params.get("high_priority_cookie_contents")
    match = re.search(rf"\b{re.escape(cookie)}=([^;]+)", header)
    if match is None:
        return False
    return not contents or str(contents) in match.group(1)


def _backend_head(ctx: RequestContext, body_length: int | None) -> bytes:
    svc = ctx.service
    head = ctx.head
    rules = svc.headers
    headers = backend_request_headers(
        head.headers, client_ip=ctx.peer_ip, trusted=_trusted(svc, ctx.peer_ip),
        blind_proxy=bool(svc.params.get("blind_proxy", False)),
        persist_backend=bool(svc.params.get("persist_backend", False)),
        enable_reproxy=bool(svc.params.get("enable_reproxy", False)),
        remove=rules.remove, insert=rules.insert)
    if head.chunked:
        headers = set_header(headers, "Content-Length", str(body_length or 0))
    if head.get("Expect") is not None:
        headers = set_header(headers, "Expect", None)
    out = [backend_request_line(head.method, head.target)]
    out.extend(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers)
    out.append(b"\r\n")
    return b"".join(out)


async def handle(ctx: RequestContext) -> bool:
    runtime = cast("Runtime", ctx.server)
    svc = ctx.service
    pool = runtime.graph.pools.get(svc.pool_name or "")
    head = ctx.head
    if pool is None:
        return await ctx.send_simple(503)
    # A body the backend can be sent again (retry on a stale idle connection).
    replay_body: bytes | None = None
    if head.chunked:
        if "100-continue" in (head.get("Expect") or "").lower() and not ctx.leftover:
            await ctx.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        limit = svc.params.get("max_chunked_request_size", 209715200)
        replay_body = await ctx.read_body(limit if isinstance(limit, int) and limit > 0 else 1 << 62)
    elif not ctx.body.done:
        if len(ctx.leftover) >= ctx.body.remaining:
            replay_body = await ctx.read_body()
        elif (head.http_version >= (1, 1) and not ctx.leftover
              and "100-continue" in (head.get("Expect") or "").lower()):
            await ctx.send(b"HTTP/1.1 100 Continue\r\n\r\n")
    else:
        replay_body = b""
    request_head = _backend_head(ctx, len(replay_body) if replay_body is not None else None)

    tried: set[str] = set()
    attempts = 0
    while True:
        attempts += 1
        conn = await _acquire(runtime, ctx, svc, pool, tried, allow_idle=attempts == 1)
        if conn is None:
            return await ctx.send_simple(503)
        try:
            return await _exchange(runtime, ctx, conn, request_head, replay_body)
        except _Retry:
            await runtime.backends.discard(conn)
            if replay_body is None or attempts > 2:
                return await ctx.send_simple(502, keep_alive=False)


async def _acquire(runtime: "Runtime", ctx: RequestContext, svc: Service, pool: object,
                   tried: set[str], allow_idle: bool) -> BackendConn | None:
    from perlbal.graph import Pool

    assert isinstance(pool, Pool)
    backends = runtime.backends
    if allow_idle and svc.params.get("persist_backend", False):
        conn = await backends.take_idle(svc, pool)
        if conn is not None:
            return conn
    queue = runtime.live.queue_for(svc.name)
    waiting = queue.high if _high_priority(svc, ctx) else queue.normal
    stamp = time.time()
    waiting.append(stamp)
    try:
        return await backends.connect(svc, pool, tried)
    finally:
        try:
            waiting.remove(stamp)
        except ValueError:
            pass


async def _read_response_head(conn: BackendConn) -> tuple[ResponseHead, bytes]:
    reader = ResponseHeadReader()
    got_any = False
    while True:
        try:
            data = await conn.stream.receive(RECV_SIZE)
        except anyio.EndOfStream:
            data = b""
        if not data:
            if not got_any and conn.reused:
                raise _Retry
            raise BackendProtocolError("backend closed before a complete reply head")
        got_any = True
        head = reader.feed(data)
        if head is None:
            continue
        if head.status == 100:  # an interim reply: drop it and read on
            rest = reader.leftover
            reader = ResponseHeadReader()
            head = reader.feed(rest) if rest else None
            if head is None:
                continue
        return head, reader.leftover


async def _exchange(runtime: "Runtime", ctx: RequestContext, conn: BackendConn,
                    request_head: bytes, replay_body: bytes | None) -> bool:
    svc = ctx.service
    pool = runtime.graph.pools.get(svc.pool_name or "")
    if pool is not None:
        pool.node_used[conn.ipport] = pool.node_used.get(conn.ipport, 0) + 1
    live = runtime.live
    live.node_requests[conn.ipport] = live.node_requests.get(conn.ipport, 0) + 1
    conn.uses += 1
    method = ctx.head.method
    # --- send the request ---
    try:
        if replay_body is not None:
            await conn.stream.send(request_head + replay_body if replay_body else request_head)
        else:
            await conn.stream.send(request_head)
            conn.reused = False  # the body is being consumed: no replay possible
            try:
                async for piece in ctx.body_chunks():
                    await conn.stream.send(piece)
            except (HttpError, anyio.EndOfStream, anyio.BrokenResourceError,
                    anyio.ClosedResourceError):
                await runtime.backends.discard(conn)  # client went away mid-upload
                return False
    except _BROKEN:
        if conn.reused:
            raise _Retry
        await runtime.backends.discard(conn)
        return await _fail(ctx, 502)
    live.set_state(conn.sock_id, "wait_res")
    # --- read the reply head ---
    try:
        with anyio.fail_after(BACKEND_RESPONSE_TIMEOUT):
            resp, leftover = await _read_response_head(conn)
    except _Retry:
        raise
    except TimeoutError:
        await runtime.backends.discard(conn)
        return await _fail(ctx, 504)
    except (BackendProtocolError, *_BROKEN):
        await runtime.backends.discard(conn)
        return await _fail(ctx, 502)
    live.node_last_response[conn.ipport] = time.time()
    # Perl's NodeStats for ``nodes`` (Perl counts ``requests`` when the body is done)
    live.node_response(conn.ipport, resp.status)
    live.node_request_done(conn.ipport)
    live.set_state(conn.sock_id, "xfer_res")
    keep = (client_keep_alive(ctx.head, resp.headers, resp.status,
                              persist_client=bool(svc.params.get("persist_client", False)))
            and not runtime.draining)
    out_headers = client_response_headers(resp.headers, keep_alive=keep,
                                          idle_timeout=ctx.idle_timeout)
    has_body = resp.has_body(method)
    if has_body and resp.chunked:
        # de-chunked for an HTTP/1.0 client: no length, so the client connection ends the body
        keep = False
        out_headers = set_header(out_headers, "Connection", "close")
        out_headers = set_header(out_headers, "Keep-Alive", None)
    head_bytes = render_head(resp.status, out_headers, resp.reason)
    backend_reusable = backend_keep_alive(resp, method)
    # --- fast path: the whole body is already here ---
    if not has_body or (resp.content_length is not None and len(leftover) >= resp.content_length):
        body = leftover[: resp.content_length] if has_body else b""
        await runtime.backends.release(svc, conn, backend_reusable and (
            len(leftover) == (resp.content_length if has_body else 0)))
        await ctx.send(head_bytes + body)
        return keep
    return await _relay(runtime, ctx, conn, resp, leftover, head_bytes, keep, backend_reusable)


async def _fail(ctx: RequestContext, status: int) -> bool:
    if not ctx.response_started:
        await ctx.send_simple(status, keep_alive=False)
    return False


async def _relay(runtime: "Runtime", ctx: RequestContext, conn: BackendConn, resp: ResponseHead,
                 leftover: bytes, head_bytes: bytes, keep: bool, reusable: bool) -> bool:
    svc = ctx.service
    limit = svc.params.get("buffer_size", 262144)
    buf = ByteBuffer(limit if isinstance(limit, int) else 262144)
    backends = runtime.backends
    conn_done = False  # the reader released or discarded the backend

    async def read_backend() -> None:
        nonlocal conn_done
        remaining = resp.content_length
        decoder = ChunkedDecoder(max_body_size=0) if resp.chunked else None
        data = leftover
        clean = False
        try:
            while True:
                if data:
                    if decoder is not None:
                        pieces = decoder.feed(data)
                        for piece in pieces:
                            await buf.put(piece)
                        if decoder.done:
                            clean = not decoder.unused_data
                            break
                    elif remaining is not None:
                        if len(data) > remaining:
                            raise BackendProtocolError("backend sent more than Content-Length")
                        remaining -= len(data)
                        await buf.put(data)
                        if remaining == 0:
                            clean = True
                            break
                    else:
                        await buf.put(data)
                with anyio.fail_after(BACKEND_IDLE_TIMEOUT):
                    try:
                        data = await conn.stream.receive(RECV_SIZE)
                    except anyio.EndOfStream:
                        data = b""
                if not data:
                    if remaining is None and decoder is None:
                        break  # body delimited by the backend closing
                    raise BackendProtocolError("backend closed mid-body")
        except (BackendProtocolError, HttpError, TimeoutError, *_BROKEN) as exc:
            conn_done = True
            buf.fail(str(exc) or type(exc).__name__)
            await backends.discard(conn)
            return
        conn_done = True
        buf.finish()
        await backends.release(svc, conn, reusable and clean)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_backend)
        try:
            await ctx.send(head_bytes)
            while True:
                data = await buf.take()
                if not data:
                    break
                await ctx.send(data)
        except _BROKEN:
            tg.cancel_scope.cancel()
            if not conn_done:
                await backends.discard(conn)
            return False
    return keep and buf.error is None
