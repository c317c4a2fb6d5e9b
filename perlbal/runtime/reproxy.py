"""Reproxying: a backend answers with X-REPROXY-URL / X-REPROXY-FILE and Perlbal serves that instead.

The client never sees a redirect (doc/reproxying.txt).  Matched behaviour of
Perl Perlbal 1.80 (BackendHTTP::handle_response, ClientProxy::start_reproxy_uri,
use_reproxy_backend, backend_response_received, start_reproxy_file,
satisfy_request_from_cache), checked against the live Perl server by
tests/reproxy/test_reproxy_vs_perl.py:

* X-REPROXY-URL (when ``enable_reproxy`` is on; otherwise the headers pass
  through untouched): the URLs are tried in order with ``GET|HEAD <path>
  HTTP/1.0``, ``Connection: keep-alive`` and the client's Range and Host.  A
  URL fails when its host cannot be reached, or answers with neither 2xx nor
  416, or its Content-Length differs from a non-zero X-REPROXY-EXPECTED-SIZE;
  the next is then tried.  When none is left: 503 (Perl's page).
* The client gets the *primary* backend's headers, with the target's
  Content-Length, without the X-REPROXY-* headers, with the target's 206/416
  status plus its Accept-Ranges/Content-Range, 204 turned into 200, then
  Perl's keep-alive rule.  The target's body is relayed with
  ``buffer_size_reproxy_url`` as the read-ahead limit.
* X-REPROXY-FILE: the file is stat'ed; missing, empty or of another size
  than X-REPROXY-EXPECTED-SIZE -> 404.  A regular file gets ``Accept-Ranges:
  bytes``; Range is answered like the web server (206 / 416 with only
  Content-Range); the body goes out with sendfile.  Perl leaves
  X-REPROXY-EXPECTED-SIZE / -CACHE-FOR in this reply; we strip every
  X-REPROXY-* header (the one deliberate difference).
* X-REPROXY-CACHE-FOR ``SECONDS; Header Names``: with reproxy_cache_maxsize
  set, the URL list is cached under ``Host|URI``; a later body-less request
  for it skips the backend: 304 when If-Modified-Since equals the cached
  Last-Modified, else a 200 with Date and the cached headers, reproxied.

Connections to targets are kept by ``reproxy_manager.ReproxyManager``
(bored keep-alive reuse, SERVER max_reproxy_connections, reproxy_state).
"""

from __future__ import annotations

import os
import stat
import time
from typing import TYPE_CHECKING

import anyio

from perlbal.http import (
    BackendProtocolError,
    HttpError,
    ResponseHead,
    BackendSide,
    backend_keep_alive,
    client_keep_alive,
    client_response_headers,
    parse_reproxy_cache_for,
    parse_reproxy_expected_size,
    parse_reproxy_file,
    parse_reproxy_urls,
    render_head,
    reproxy_request_head,
    set_header,
)
from perlbal.docroot import http_date
from perlbal.http.ranges import evaluate_range
from perlbal.http.reproxy import REPROXY_RESPONSE_HEADERS
from perlbal.http.responses import reason_phrase
from perlbal.plugins.hooks import ReproxyFhFinished, StartFileReproxy, fire
from perlbal.runtime.context import RECV_SIZE, RequestContext
from perlbal.runtime.diskio import inline_disk, open_file, run_disk, send_file
from perlbal.runtime.aio import FastStream
from perlbal.runtime.relay import BROKEN, ByteBuffer, relay_body
from perlbal.runtime.reproxy_guard import guard_file, guard_urls
from perlbal.runtime.reproxy_manager import CacheEntry, ReproxyConn, ReproxyManager

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

__all__ = ["wants_reproxy", "take_over", "serve_from_cache", "manager"]

#: Seconds a reproxy target may take to start answering, and may stay silent mid-body.
TARGET_TIMEOUT = 60.0

Header = tuple[str, str]
_BROKEN = BROKEN


def manager(runtime: "Runtime") -> ReproxyManager:
    """The runtime's ReproxyManager, made on first use (it lives on ``runtime.live``)."""
    live = runtime.live
    if live.reproxy is None:
        live.reproxy = ReproxyManager(live, lambda: runtime.graph)
    return live.reproxy


def wants_reproxy(resp: ResponseHead) -> bool:
    """Does this backend reply hand the work back to us (enable_reproxy checked by the caller)?"""
    return bool(resp.get("X-REPROXY-FILE") or resp.get("X-REPROXY-URL"))


async def take_over(runtime: "Runtime", ctx: RequestContext, resp: ResponseHead) -> bool:
    """Serve the client from the X-REPROXY-FILE / -URL of ``resp``; returns keep-alive.

    The caller has already freed the primary backend connection.
    """
    file_value = resp.get("X-REPROXY-FILE")
    if file_value:
        # plugin hook (perlbal.plugins.hooks): may change the file or take over;
        # Stats counts files_reproxied here
        reproxy_hook = StartFileReproxy(ctx, path=file_value)
        if await fire(reproxy_hook):
            return ctx.last_keep_alive
        allowed_path = await guard_file(ctx, reproxy_hook.path)  # reproxy_file_roots
        if allowed_path is None:
            return False
        return await _reproxy_file(runtime, ctx, resp, allowed_path)
    urls = resp.get("X-REPROXY-URL") or ""
    _remember(runtime, ctx, resp, urls)
    return await _reproxy_urls(runtime, ctx, list(resp.headers), resp.status, resp.reason, urls,
                               resp.get("X-REPROXY-EXPECTED-SIZE"))


# --- the cache ---------------------------------------------------------------------------


def _cache_key(ctx: RequestContext) -> str:
    return f"{ctx.head.get('Host') or ''}|{ctx.head.target}"


def _remember(runtime: "Runtime", ctx: RequestContext, resp: ResponseHead, urls: str) -> None:
    """Service::add_to_reproxy_url_cache."""
    cache = manager(runtime).cache(ctx.service)
    if cache is None or not urls:
        return
    try:
        cache_for = parse_reproxy_cache_for(resp.get("X-REPROXY-CACHE-FOR"))
    except BackendProtocolError:
        return
    if cache_for is None:
        return
    replay: list[Header] = []
    for name in cache_for.header_names:
        value = resp.get(name)
        if value:
            replay.append((name, value))
    cache.set(_cache_key(ctx), CacheEntry(time.time() + cache_for.seconds, tuple(replay), urls))


async def serve_from_cache(runtime: "Runtime", ctx: RequestContext) -> bool | None:
    """ClientProxy::satisfy_request_from_cache: None when the backend must be asked."""
    mgr = manager(runtime)
    cache = mgr.cache(ctx.service)
    if cache is None:
        return None
    stats = mgr.stats_for(ctx.service.name)
    stats.requests += 1
    entry = cache.get(_cache_key(ctx))
    if entry is None or time.time() > entry.expires:
        return None
    stats.hits += 1
    ims = ctx.head.get("If-Modified-Since")
    if ims:
        last_modified = next((v for k, v in entry.headers if k.upper() == "LAST-MODIFIED"), "")
        if ims.split("; length=")[0] == last_modified:
            keep = ctx.persist_client and ctx.head.wants_keep_alive \
                and not runtime.draining
            head304 = client_response_headers([("Content-Length", "0")], keep_alive=keep,
                                              idle_timeout=ctx.idle_timeout)
            await ctx.send(render_head(304, head304))
            return keep
    headers: list[Header] = [("Date", http_date(time.time()))]
    for name, value in entry.headers:
        headers = set_header(headers, name, value)
    return await _reproxy_urls(runtime, ctx, headers, 200, "OK", entry.urls, None)


# --- X-REPROXY-URL ------------------------------------------------------------------------


async def _reproxy_urls(runtime: "Runtime", ctx: RequestContext, primary: list[Header],
                        status: int, reason: str, urls: str, expected_text: str | None) -> bool:
    targets = parse_reproxy_urls(urls)
    if await guard_urls(runtime, ctx, targets):  # reproxy_url_hosts
        return False
    try:
        expected = parse_reproxy_expected_size(expected_text)
    except BackendProtocolError:
        expected = -1  # never matches: every URL fails, as in Perl
    mgr = manager(runtime)
    method = ctx.head.method
    client = ctx.stream if isinstance(ctx.stream, FastStream) else None
    for target in targets:
        got = await _fetch(mgr, ctx, target.host, target.port, target.path, client)
        if got is None:
            continue
        conn, tresp, side = got
        if not (200 <= tresp.status <= 299 or tresp.status == 416) or (
                expected is not None and tresp.content_length != expected):
            mgr.close(conn)  # Perl's non_200_reproxy: fall back to the next URL
            continue
        return await _answer_from_target(runtime, ctx, mgr, conn, tresp, side, primary,
                                         status, reason, method)
    return await ctx.send_simple(503)


async def _fetch(mgr: ReproxyManager, ctx: RequestContext, host: str, port: int, path: str,
                 client: FastStream | None) -> tuple[ReproxyConn, ResponseHead, BackendSide] | None:
    """Ask one target; a reused connection that dies before answering is retried once fresh."""
    request = reproxy_request_head(ctx.head.method, path, range_header=ctx.head.get("Range"),
                                   host=ctx.head.get("Host"))
    for _attempt in range(2):
        conn = await mgr.acquire(host, port, client=str(ctx.peer_port))
        if conn is None:
            return None
        reused = conn.uses > 0
        conn.uses += 1
        try:
            await conn.stream.send(request)
            mgr.set_state(conn, "wait_res")
            side = BackendSide(ctx.head.method)
            while True:
                try:
                    data = await conn.stream.receive(RECV_SIZE, timeout=TARGET_TIMEOUT, watch=client)
                except anyio.EndOfStream:
                    data = b""
                if not data and reused:
                    raise BackendProtocolError("reproxy target closed before replying")
                reused = False  # something arrived: no silent retry any more
                side.receive_data(data)
                head = side.next_head()
                if head is not None:
                    mgr.set_state(conn, "xfer_res")
                    return conn, head, side
        except (BackendProtocolError, HttpError, TimeoutError, *_BROKEN):
            mgr.close(conn)
            if not reused:
                return None
        except BaseException:
            mgr.close(conn)  # the client left (PeerGone) or we were cancelled
            raise
    return None


def _client_head(ctx: RequestContext, runtime: "Runtime", headers: list[Header], status: int,
                 reason: str) -> tuple[bytes, bool]:
    for name in REPROXY_RESPONSE_HEADERS:
        headers = set_header(headers, name, None)
    if status == 204:  # Perl upgrades No Content to OK on a reproxied reply
        status, reason = 200, reason_phrase(200)
    keep = client_keep_alive(ctx.head, headers, status,
                             persist_client=ctx.persist_client)
    keep = keep and not runtime.draining
    out = client_response_headers(headers, keep_alive=keep, idle_timeout=ctx.idle_timeout)
    return render_head(status, out, reason), keep


async def _answer_from_target(runtime: "Runtime", ctx: RequestContext, mgr: ReproxyManager,
                              conn: ReproxyConn, tresp: ResponseHead, side: BackendSide,
                              primary: list[Header], status: int, reason: str, method: str) -> bool:
    headers = set_header(primary, "Content-Length", tresp.get("Content-Length"))
    if tresp.status in (206, 416):
        status, reason = tresp.status, reason_phrase(tresp.status)
        for name in ("Accept-Ranges", "Content-Range"):
            value = tresp.get(name)
            if value:
                headers = set_header(headers, name, value)
    has_body = tresp.has_body(method)
    if has_body and tresp.content_length is None:
        headers = set_header(headers, "Content-Length", None)  # length unknown: the close ends it
    head_bytes, keep = _client_head(ctx, runtime, headers, status, reason)
    reusable = backend_keep_alive(tresp, method)
    try:
        first = side.next_body() or b""  # what of the body came with the head
    except BackendProtocolError:
        mgr.close(conn)
        return await ctx.send_simple(502, keep_alive=False)
    if side.done:
        mgr.release(conn, reusable and side.ended_cleanly)
        await ctx.send(head_bytes + first)
        return keep
    return await _relay_target(ctx, mgr, conn, tresp, side, first, head_bytes, keep, reusable)


async def _relay_target(ctx: RequestContext, mgr: ReproxyManager, conn: ReproxyConn,
                        tresp: ResponseHead, side: BackendSide, first: bytes, head_bytes: bytes,
                        keep: bool, reusable: bool) -> bool:
    limit = ctx.service.tunables.buffer_size_reproxy_url
    buf = ByteBuffer(limit if limit > 0 else 51200)
    framed = tresp.content_length is not None  # else the close ends it: never reusable
    whole = await relay_body(
        ctx, head_bytes, buf, conn.stream, side, first, TARGET_TIMEOUT,
        release=lambda clean: mgr.release(conn, reusable and clean and framed),
        drop=lambda: mgr.close(conn), length_known=framed)
    return keep and whole and framed


# --- X-REPROXY-FILE -----------------------------------------------------------------------


async def _reproxy_file(runtime: "Runtime", ctx: RequestContext, resp: ResponseHead,
                        value: str) -> bool:
    try:
        path = parse_reproxy_file(value)
        expected = parse_reproxy_expected_size(resp.get("X-REPROXY-EXPECTED-SIZE"))
        st = await run_disk(inline_disk(ctx), os.stat, path)
    except (BackendProtocolError, OSError):
        return await ctx.send_simple(404)
    size = st.st_size
    if not size or (expected is not None and expected != size):
        return await ctx.send_simple(404)  # Perl: empty, missing or not the expected size
    headers = list(resp.headers)
    status, reason = resp.status, resp.reason
    if stat.S_ISREG(st.st_mode):
        headers = set_header(headers, "Accept-Ranges", "bytes")
    rng = evaluate_range(ctx.head.get("Range"), size)
    if rng.status == 416:
        # Perl answers with a brand-new head holding only Content-Range
        headers, status, reason = [("Content-Range", f"bytes */{size}")], 416, reason_phrase(416)
    elif status == 204:
        status, reason = 200, reason_phrase(200)
    if rng.status == 200:
        headers = set_header(headers, "Content-Length", str(size))
    elif rng.status == 206:
        headers = set_header(headers, "Content-Range", f"bytes {rng.start}-{rng.end}/{size}")
        headers = set_header(headers, "Content-Length", str(rng.end - rng.start + 1))
        status, reason = 206, reason_phrase(206)
    head_bytes, keep = _client_head(ctx, runtime, headers, status, reason)
    if ctx.head.method == "HEAD" or rng.status == 416:
        await ctx.send(head_bytes)
        return keep
    try:
        fh = await run_disk(inline_disk(ctx), open_file, path)
    except OSError:
        return await ctx.send_simple(500, keep_alive=False)
    try:
        offset, count = (rng.start, rng.end - rng.start + 1) if rng.status == 206 else (0, size)
        await ctx.send(head_bytes, more=True)
        await send_file(ctx, fh, offset, count)
        await fire(ReproxyFhFinished(ctx))  # plugin hook: the file was sent completely
    except _BROKEN:
        return False
    finally:
        fh.close()  # closing a regular file does not wait on the disk
    return keep
