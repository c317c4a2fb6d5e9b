"""One client connection: read request heads, dispatch by the service's role, loop while kept alive.

Perl's ClientHTTPBase/ClientProxy/ClientManage read loop, as one coroutine:

- the role is read from the service at every request (``SET role`` and a
  selector's map apply to the next request);
- a management connection speaks HTTP or the line console
  (``management.console``), decided from its first bytes
  (``perlbal.http.firstbytes``): a method token and a space is HTTP however
  long or slow the rest of the request line (waiting for the first LF let a
  long cross-site POST run its body as console lines).  Perl's ClientManage.pm
  looks only for ``GET ``/``HEAD ``/``POST ``, so a browser's ``PUT`` with
  console lines as its body ran them (DNS rebinding): here every method goes
  to the HTTP side, which answers 405 to other methods and 403 to a Host that
  is neither the listener's address nor in ``allowed_hosts``;
- each request is framed by the connection's ``perlbal.http.ClientSide`` (h11);
  the first head must arrive within ``idle_timeout``, later ones (kept-alive)
  within ``persist_client_idle_timeout``; silence closes the connection;
- a malformed head is answered with Perl's simple page carrying the reason,
  then the connection is closed (the byte stream cannot be trusted any more);
- pipelined requests are answered strictly in order: the next head is parsed
  only after the handler of the previous one returned.

Invariant: no exception escapes to the client as text; a handler failure that
is not the connection's own (the peer gone, a timeout) is logged once, answered
``500 Internal error`` if no byte of the reply went out, and the connection is
closed.
"""

from __future__ import annotations

import errno
import functools
import importlib
import logging
import time
import weakref
from typing import TYPE_CHECKING, cast

import anyio

from perlbal.graph import Service
from perlbal.http import ClientSide, HttpError, Limits, simple_response
from perlbal.http.firstbytes import Speaks, first_bytes_speak
from perlbal.http.policy import http10_chunked_refusal
from perlbal.routing import HOOKS_ENFORCED, Request, Respond, dispatch, management_refusal
from perlbal.runtime.accesslog import finish as finish_request
from perlbal.runtime.context import RECV_SIZE, Handler, RequestContext
from perlbal.runtime.aio import FastStream

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

log = logging.getLogger("perlbal.runtime")

_CORE_ROLES = (None, "reverse_proxy", "web_server", "management", "selector")


async def _missing_webserver(ctx: RequestContext) -> bool:
    await ctx.send_simple(501, "web_server role is not available in this build", keep_alive=False)
    return False


def handler_for(role: str | None) -> Handler | None:
    """The role handler; imported lazily so a missing module answers instead of crashing."""
    if role == "reverse_proxy":
        from perlbal.runtime import proxy
        return proxy.handle
    if role == "web_server":
        try:
            module = importlib.import_module("perlbal.runtime.webserver")
        except ImportError as exc:
            if exc.name != "perlbal.runtime.webserver":
                raise
            return _missing_webserver
        handle = getattr(module, "handle", None)
        return cast(Handler, handle) if handle is not None else _missing_webserver
    if role == "management":
        from perlbal.runtime import management
        return management.handle_http
    return None


async def _receive(stream: FastStream, timeout: float | None = None) -> bytes:
    try:
        return await stream.receive(RECV_SIZE, timeout=timeout)
    except TimeoutError:
        raise  # (an OSError too, but the caller decides what silence means)
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        return b""


async def serve_client(runtime: "Runtime", stream: FastStream, service_name: str,
                       resumed: bool = False) -> bool:
    """Serve requests on one client connection.  True when the connection is
    idle between keep-alive requests and should be parked (no task held while
    it waits: ``Runtime._park``), to be resumed with ``resumed=True``."""
    graph = runtime.graph
    listener_svc = graph.services.get(service_name)
    if listener_svc is None:
        return False
    # the address a PROXY protocol header named stands for the client (runtime/proxyproto.py)
    # (stream.peer: as accepted, an IPv4-mapped address unmapped: clients.py)
    peer = stream.proxied_peer or stream.peer or stream._transport.get_extra_info("peername")
    peer_ip, peer_port = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else ("", 0)
    first = not resumed
    counted_in, counted_out = stream.bytes_in, stream.bytes_out
    if listener_svc.role not in _CORE_ROLES:
        # a plugin's role (EchoService's echo) owns the whole connection
        from perlbal.plugins.hooks import role_owner

        owner = role_owner(runtime.interp.plugins, listener_svc.role)
        if owner is not None:
            await getattr(owner, "serve_connection")(runtime, stream, listener_svc)
            return False
    http = ClientSide(_limits(listener_svc))
    # the first head's deadline; on a management port it also bounds the wait
    # for the first bytes that tell HTTP from the console
    idle = listener_svc.tunables.idle_timeout
    first_deadline = time.monotonic() + idle if first and idle > 0 else None
    while True:
        svc = listener_svc
        if first and svc.role == "management":
            speaks, leftover = await _first_bytes(stream, first_deadline)
            if speaks is None:
                return False
            if speaks is Speaks.CONSOLE:
                from perlbal.runtime.management import console

                await console(runtime, stream, leftover)
                return False
            http.receive_data(leftover)
        timeout = (svc.tunables.idle_timeout if first
                   else svc.tunables.persist_client_idle_timeout)
        try:
            head = http.next_head()
            deadline = (first_deadline if first else
                        time.monotonic() + timeout if timeout > 0 else None)
            while head is None:
                left = deadline - time.monotonic() if deadline is not None else None
                if left is not None and left <= 0:
                    return False
                try:
                    # (a wake-up a second: a graceful shutdown must not wait on a
                    # connection that has not begun a request)
                    data = await _receive(stream, min(left, 1.0) if left is not None else 1.0)
                except TimeoutError:
                    if runtime.draining and not http.has_buffered:
                        return False
                    continue
                if not data:
                    return False
                http.receive_data(data)
                head = http.next_head()
        except TimeoutError:
            return False
        except HttpError as exc:
            log.info("client %s on %s refused: %d %s", peer_ip, service_name, exc.status,
                     exc.reason)
            # Perl closes some of these without a word (exc.perl_closes_silently);
            # every refusal here says why, on the first request or a later one
            try:
                await stream.send(simple_response(exc.status, exc.reason,
                                                  server_tokens=svc.tunables.server_tokens))
            except Exception:
                pass
            return False
        first = False
        runtime.live.total_requests += 1
        started = time.time()
        # a selector's return_to_base plugin may have kept the connection with
        # the service of its last request (Perl: the client was not returned to base)
        stay = _STAYS_WITH.get(stream)
        ctx = RequestContext(service=graph.services.get(stay, svc) if stay else svc, head=head,
                             stream=stream, peer_ip=peer_ip, server=runtime, http=http,
                             peer_port=peer_port, listener_service=listener_svc)
        keep = await _dispatch(runtime, ctx)
        # metrics and the access log (accesslog.py); bytes counted since the last request
        finish_request(runtime, ctx, started, stream.bytes_in - counted_in,
                       stream.bytes_out - counted_out)
        counted_in, counted_out = stream.bytes_in, stream.bytes_out
        if not keep or runtime.draining or http.must_close:
            return False
        if not ctx.body_done and not await ctx.skip_body():
            return False
        if listener_svc.role == "selector" and ctx.service is not listener_svc \
                and not await _return_to_base(ctx, listener_svc, stream):
            return False
        http.start_next()
        if not http.has_buffered and not stream.buffered:
            # idle between requests: park without a task (about 3 KB less per
            # idle keep-alive client than awaiting here; bench/idle_rss.py)
            return True
        # pipelined: the next request is already here
        del ctx, head


async def _first_bytes(stream: FastStream, deadline: float | None) -> tuple[Speaks | None, bytes]:
    """Read a management connection's first bytes until they say HTTP or console
    (``perlbal.http.firstbytes``); None: the peer closed before they did."""
    data = b""
    while (speaks := first_bytes_speak(data)) is Speaks.MORE:
        left = deadline - time.monotonic() if deadline is not None else None
        try:
            if left is not None and left <= 0:
                raise TimeoutError
            more = await _receive(stream, left)
        except TimeoutError:
            return first_bytes_speak(data, final=True), data
        if not more:
            return None, data
        data += more
    return speaks, data


# connection -> name of the service its next request goes to, skipping the
# selector it came through (a selector plugin's return_to_base returned true)
_STAYS_WITH: "weakref.WeakKeyDictionary[FastStream, str]" = weakref.WeakKeyDictionary()


async def _return_to_base(ctx: RequestContext, selector: Service, stream: FastStream) -> bool:
    """Perl's http_response_sent on a kept-alive client that a selector handed
    on: the selector's return_to_base hook decides whether the next request
    goes through the selector again (False from every plugin, or no plugin) or
    stays with ``ctx.service``.  False: close the connection (a plugin failed)."""
    stays = False
    if selector.plugin_order:
        from perlbal.plugins.hooks import ReturnToBase, fire

        ctx.last_keep_alive = True
        stays = await fire(ReturnToBase(ctx), selector)
        if not ctx.last_keep_alive:  # the plugin raised: logged, the connection ends
            return False
    if stays:
        _STAYS_WITH[stream] = ctx.service.name
    else:
        _STAYS_WITH.pop(stream, None)
    return True


def _limits(svc: Service) -> Limits:
    size = svc.tunables.max_request_head_size
    return _limits_of(size if size > 0 else 16384)


@functools.lru_cache(maxsize=64)
def _limits_of(max_head_size: int) -> Limits:
    return Limits(max_head_size=max_head_size)


async def _dispatch(runtime: "Runtime", ctx: RequestContext) -> bool:
    svc = ctx.service
    try:
        # selectors and the decide() start_http_request hooks (AccessControl,
        # Redirect, MaxContentLength, NotModified) run in perlbal.routing, shared
        # with explain; the other hooks fire from the role handlers
        result = dispatch(runtime.graph, svc, Request(ctx.head, ctx.peer_ip, ctx.observed_ip()),
                          plugins=runtime.interp.plugins.find,
                          run_hooks=HOOKS_ENFORCED)
        if isinstance(result, Respond):
            if result.headers:  # e.g. Redirect's Location: Perl's send_full_response
                return await ctx.send_full_response(result.status, result.headers,
                                                    (result.message or "").encode())
            await ctx.send_simple(result.status, result.message)
            return ctx.keep_alive
        ctx.head = result.head
        ctx.queue_low = result.queue_low
        svc = ctx.service = result.service
        selected = svc is not ctx.listener_service
        if svc.role == "management" and not selected:
            refusal = management_refusal(svc, ctx.head)
            if refusal is not None:
                await ctx.send_simple(refusal[0], refusal[1], keep_alive=False)
                return False
        refusal_10 = http10_chunked_refusal(ctx.head, svc.role, svc.tunables.buffer_uploads)
        if refusal_10 is not None:
            raise refusal_10
        # Perl's adopt_base_client maps a selected service to reverse_proxy,
        # web_server or selector only: a VHOST naming a management (or
        # upload_tracker) service answers 500, never hands a public client to
        # the console; the connection stays open per the selector's persist_client
        handler = handler_for(svc.role) if not (selected and svc.role == "management") else None
        if handler is None:
            return await ctx.send_simple(500, f"Can't map to service type {svc.role}")
        return await handler(ctx)
    except HttpError as exc:
        if not ctx.response_started:
            try:
                await ctx.send_simple(exc.status, exc.reason, keep_alive=False)
            except Exception:
                pass
        return False
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
        return False
    except Exception as exc:
        if isinstance(exc, OSError) and _peer_gone(exc):
            return False
        # A fault of ours or of the disk (a handler's unexpected OSError, a bug),
        # not of the connection: logged, and answered 500 when nothing of the
        # reply has gone out yet, instead of a connection closed without a word.
        log.exception("request %s %s on %s failed", ctx.head.method, ctx.head.target,
                      ctx.service.name)
        if not ctx.response_started:
            try:
                await ctx.send_simple(500, "Internal error", keep_alive=False)
            except Exception:
                pass
        return False


#: errors of a socket whose peer went away or timed out: nothing to answer
_PEER_GONE_ERRNOS = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN,
                               errno.ECONNABORTED, errno.ETIMEDOUT, errno.EBADF})


def _peer_gone(exc: OSError) -> bool:
    return isinstance(exc, (ConnectionError, TimeoutError)) or exc.errno in _PEER_GONE_ERRNOS
