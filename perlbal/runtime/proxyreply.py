"""The ``reverse_proxy`` role's second half: the backend's reply, relayed to the client.

``proxy.py`` sends the request (Perl's ClientProxy choosing and writing to a
BackendHTTP); from there ``relay_reply`` does what Perl's BackendHTTP does
with the answer:

1. the reply is framed by ``perlbal.http.BackendSide`` (h11), waiting at most
   ``backend_timeout`` seconds, and given up at once (the backend freed) when
   the client disconnects meanwhile; a 101 turns the exchange into a byte
   tunnel (``tunnel.py``), if it switches to a protocol the request offered
   (else 502: ``perlbal.http.upgrade.switch_refusal``);
2. X-REPROXY-FILE / -URL / -SERVICE hand the reply back to us (``reproxy.py``,
   or another service), the primary backend freed first;
3. its head goes to the client as HTTP/1.0 with Perl's keep-alive decision;
   the body is relayed through ``relay.ByteBuffer``: a reader task runs up to
   ``buffer_size`` ahead of the client, so the backend is released (parked or
   closed) as soon as the whole reply is read.

Failures: a backend that resets, sends garbage or stays silent -> 502 / 504
when nothing was sent to the client yet, else the client is closed.  A reused
idle connection that fails before any reply byte raises ``Retry``; a 500 to
GET/HEAD that ``enable_error_retries`` may ask again raises ``ErrorRetry``
(``proxy.py`` asks another connection).  A backend that saw any failure is
closed, never parked.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio

from perlbal.graph import Service
from perlbal.http import (BackendProtocolError, BackendSide, ResponseHead, backend_keep_alive,
                          client_keep_alive, client_response_headers, render_head, set_header)
from perlbal.http.fields import UnsafeField
from perlbal.http.backend import UNOFFERED_SWITCH
from perlbal.http.upgrade import switch_refusal
from perlbal.plugins.hooks import (BackendResponseReceived, ModifyResponseHeaders, PrependBody,
                                   fire)
from perlbal.runtime import reproxy, tunnel
from perlbal.runtime.aio import FastStream, PeerGone
from perlbal.runtime.backends import BackendConn
from perlbal.runtime.context import RECV_SIZE, RequestContext
from perlbal.runtime.relay import BROKEN, ByteBuffer, relay_body

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

#: Default seconds a backend may take to start answering, or stay silent in a reply
#: body; the service's backend_response_timeout overrides it.
BACKEND_RESPONSE_TIMEOUT = 60.0

log = logging.getLogger("perlbal.runtime")

#: what the client reads when the backend fails it (Perl sends no page: it hangs or closes)
_FAIL_REASONS = {
    502: "Bad gateway: the backend's reply was malformed, cut short or reset",
    504: "Gateway timeout: the backend did not answer in time",
}


class Retry(Exception):
    """A reused backend connection died before answering; try a fresh one."""


class ErrorRetry(Exception):
    """enable_error_retries: the backend answered 500 to a GET/HEAD; ask another one."""


def backend_timeout(svc: Service) -> float | None:
    """How long a backend may stay silent, before or within its reply (None: no
    limit): the smaller of backend_response_timeout and idle_timeout.  In Perl
    the client's idle_timeout ends the wait (its socket sees no traffic while the
    backend thinks) and the client is closed without a word; here it gets 504
    before the reply head, and a cut connection after."""
    limits = [float(seconds) for seconds in (svc.tunables.backend_response_timeout,
                                             svc.tunables.idle_timeout) if seconds > 0]
    return min(limits) if limits else None


def log_fault(ctx: RequestContext, ipport: str | None, what: str, status: int) -> None:
    """One line per backend fault, with what an operator needs to find it."""
    log.warning("service %s: backend %s: %s; client %s %s %s gets %d", ctx.service.name,
                ipport or "-", what, ctx.peer_ip, ctx.head.method, ctx.head.target[:200],
                status)


async def fail(ctx: RequestContext, status: int) -> bool:
    """``status`` (502, 504) to a client that has had nothing yet; the connection ends."""
    if not ctx.response_started:
        await ctx.send_simple(status, _FAIL_REASONS.get(status), keep_alive=False)
    return False


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
                raise Retry from None  # a kept-alive connection the backend reset
            raise
        if not data and not got_any and conn.reused:
            raise Retry
        got_any = True
        side.receive_data(data)
        head = side.next_head()
        if head is not None:
            return head


async def relay_reply(runtime: "Runtime", ctx: RequestContext, conn: BackendConn, *,
                      upgrade: tuple[str, ...], may_retry_500: bool) -> bool:
    """The request has gone to ``conn``: read the reply and relay it (see the
    module docstring).  ``upgrade``: the protocols the request offered the
    backend (perlbal.http.upgrade), empty for an ordinary request.  True when
    the client connection may be kept alive."""
    svc = ctx.service
    ipport = conn.ipport
    method = ctx.head.method
    backends = runtime.backends
    live = runtime.live
    live.set_state(conn.sock_id, "wait_res")
    asked = time.monotonic()  # the node's reply time, for the web UI's graphs (timeline.py)
    client = ctx.stream if isinstance(ctx.stream, FastStream) else None
    # --- read the reply head ---
    side = BackendSide(method, upgrade=bool(upgrade))
    try:
        resp = await _read_response_head(conn, side, client, backend_timeout(svc))
        first = side.next_body() or b""  # what of the body came with the head
    except Retry:
        raise
    except PeerGone:
        backends.discard(conn)  # the client left: free the backend at once
        return False
    except TimeoutError:
        backends.discard(conn)
        log_fault(ctx, conn.ipport, "no reply within backend_response_timeout", 504)
        live.timeline.node_reply(svc.pool_name or "", ipport, 504, None)
        return await fail(ctx, 504)
    except (BackendProtocolError, *BROKEN) as exc:
        backends.discard(conn)
        live.timeline.node_reply(svc.pool_name or "", ipport, 502, None)
        if str(exc) == UNOFFERED_SWITCH:  # a 101 to a request offered none
            return await _refuse_switch(ctx, ipport, UNOFFERED_SWITCH)
        log_fault(ctx, conn.ipport, str(exc) or repr(exc), 502)
        return await fail(ctx, 502)
    live.timeline.node_reply(svc.pool_name or "", ipport, resp.status, time.monotonic() - asked)
    if resp.status == 101:  # the backend switched protocols: a byte tunnel from here on
        live.node_response(ipport, 101)
        live.node_request_done(ipport)
        refusal = switch_refusal(resp, upgrade)
        if refusal is not None:  # (issue 24: only an offered protocol is ever tunnelled)
            backends.discard(conn)
            return await _refuse_switch(ctx, ipport, refusal)
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
        raise ErrorRetry  # Perl's should_retry_after_500: the client never sees this reply
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
        log_fault(ctx, conn.ipport, f"reply head cannot be sent: {exc}", 502)
        return await fail(ctx, 502)
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


async def _refuse_switch(ctx: RequestContext, ipport: str, refusal: str) -> bool:
    """A backend's 101 we do not relay (``switch_refusal``, ``UNOFFERED_SWITCH``):
    an ERROR line saying why, and 502 to the client, whose connection ends."""
    log.error("service %s: backend %s: %s; not relayed, client %s %s %s gets 502",
              ctx.service.name, ipport, refusal, ctx.peer_ip, ctx.head.method,
              ctx.head.target[:200])
    await ctx.send_simple(502, "Bad gateway: the backend switched to a protocol this proxy "
                          "does not relay", keep_alive=False)
    return False


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
        log_fault(ctx, None, f"X-REPROXY-SERVICE {name} for a request with a body", 502)
        return await fail(ctx, 502)
    return await ctx.adopt(target)


async def _relay(runtime: "Runtime", ctx: RequestContext, conn: BackendConn, side: BackendSide,
                 first: bytes, head_bytes: bytes, keep: bool, reusable: bool) -> bool:
    svc = ctx.service
    buf = ByteBuffer(svc.tunables.buffer_size)
    backends = runtime.backends
    whole = await relay_body(
        ctx, head_bytes, buf, conn.stream, side, first, backend_timeout(svc),
        release=lambda clean: backends.release(svc, conn, reusable and clean),
        drop=lambda: backends.discard(conn),
        length_known=side.head is not None and side.head.content_length is not None)
    return keep and whole
