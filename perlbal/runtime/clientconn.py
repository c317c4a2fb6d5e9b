"""One client connection: read request heads, dispatch by the service's role, loop while kept alive.

Perl's ClientHTTPBase/ClientProxy/ClientManage read loop, as one coroutine:

- the role is read from the service at every request (``SET role`` and a
  selector's map apply to the next request);
- a management connection whose first bytes are not ``GET ``/``HEAD ``/``POST ``
  becomes a line console (``management.console``), as ClientManage.pm decides;
- the first head must arrive within ``idle_timeout``, later ones (kept-alive)
  within ``persist_client_idle_timeout``; silence closes the connection;
- a malformed head is answered with Perl's simple page carrying the reason,
  then the connection is closed (the byte stream cannot be trusted any more);
- pipelined requests are answered strictly in order: the next head is parsed
  only after the handler of the previous one returned.

Invariant: no exception escapes to the client as text; handler failures are
logged once and the connection is closed.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import TYPE_CHECKING, cast

import anyio

from perlbal.graph import Service
from perlbal.http import HeadReader, HttpError, simple_response
from perlbal.routing import HOOKS_ENFORCED, Request, Respond, dispatch
from perlbal.runtime.accesslog import finish as finish_request
from perlbal.runtime.context import RECV_SIZE, Handler, RequestContext
from perlbal.runtime.netstream import FastStream

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

log = logging.getLogger("perlbal.runtime")

_HTTP_STARTS = (b"GET ", b"HEAD ", b"POST ")
_CORE_ROLES = (None, "reverse_proxy", "web_server", "management", "selector")


def _int_param(svc: Service, name: str, default: int) -> int:
    value = svc.params.get(name, default)
    return value if isinstance(value, int) else default


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
    peer = stream._transport.get_extra_info("peername")
    peer_ip, peer_port = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else ("", 0)
    leftover = b""
    first = not resumed
    counted_in, counted_out = stream.bytes_in, stream.bytes_out
    if listener_svc.role not in _CORE_ROLES:
        # a plugin's role (EchoService's echo) owns the whole connection
        from perlbal.plugins.hooks import role_owner

        owner = role_owner(runtime.interp.plugins, listener_svc.role)
        if owner is not None:
            await getattr(owner, "serve_connection")(runtime, stream, listener_svc)
            return False
    while True:
        svc = listener_svc
        if first and svc.role == "management":
            with anyio.move_on_after(_int_param(svc, "idle_timeout", 30) or None):
                while len(leftover) < 5 and b"\n" not in leftover:
                    data = await _receive(stream)
                    if not data:
                        return False
                    leftover += data
            if not leftover.startswith(_HTTP_STARTS):
                from perlbal.runtime.management import console

                await console(runtime, stream, leftover)
                return False
        timeout = _int_param(svc, "idle_timeout" if first else "persist_client_idle_timeout", 30)
        reader = HeadReader()
        head = None
        try:
            if leftover:
                data, leftover = leftover, b""
                head = reader.feed(data)
            deadline = time.monotonic() + timeout if timeout > 0 else None
            while head is None:
                left = deadline - time.monotonic() if deadline is not None else None
                if left is not None and left <= 0:
                    return False
                data = await _receive(stream, left)
                if not data:
                    return False
                head = reader.feed(data)
        except TimeoutError:
            return False
        except HttpError as exc:
            log.info("client %s on %s refused: %d %s", peer_ip, service_name, exc.status,
                     exc.reason)
            # Perl closes some of these without a word (exc.perl_closes_silently);
            # every refusal here says why, on the first request or a later one
            try:
                await stream.send(simple_response(exc.status, exc.reason,
                                                  server_tokens=bool(svc.get("server_tokens", True))))
            except Exception:
                pass
            return False
        first = False
        runtime.live.total_requests += 1
        started = time.time()
        ctx = RequestContext(service=svc, head=head, stream=stream, peer_ip=peer_ip,
                             server=runtime, leftover=reader.leftover, peer_port=peer_port,
                             listener_service=listener_svc)
        keep = await _dispatch(runtime, ctx)
        # metrics and the access log (accesslog.py); bytes counted since the last request
        finish_request(runtime, ctx, started, stream.bytes_in - counted_in,
                       stream.bytes_out - counted_out)
        counted_in, counted_out = stream.bytes_in, stream.bytes_out
        if not keep or runtime.draining:
            return False
        if not ctx.body.done and not await ctx.skip_body():
            return False
        leftover = ctx.leftover
        if not leftover and not stream.buffered:
            # idle between requests: park without a task (about 3 KB less per
            # idle keep-alive client than awaiting here; bench/idle_rss.py)
            return True
        # pipelined: the next request is already here
        del ctx, head


def observed_ip(ctx: RequestContext) -> str | None:
    """Perl's observed_ip_string: the first X-Forwarded-For address, when the
    peer is a trusted upstream proxy of the service (AccessControl, Throttle)."""
    forwarded = ctx.head.get("X-Forwarded-For")
    if not forwarded:
        return None
    from perlbal.runtime.proxy import _trusted

    if not _trusted(ctx.service, ctx.peer_ip):
        return None
    return forwarded.split(",")[0].strip() or None


async def _dispatch(runtime: "Runtime", ctx: RequestContext) -> bool:
    svc = ctx.service
    try:
        # selectors and the decide() start_http_request hooks (AccessControl,
        # Redirect, MaxContentLength, NotModified) run in perlbal.routing, shared
        # with explain; the other hooks fire from the role handlers
        result = dispatch(runtime.graph, svc, Request(ctx.head, ctx.peer_ip, observed_ip(ctx)),
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
        handler = handler_for(svc.role)
        if handler is None:
            await ctx.send_simple(500, f"Can't map to service type {svc.role}")
            return False
        return await handler(ctx)
    except HttpError as exc:
        if not ctx.response_started:
            try:
                await ctx.send_simple(exc.status, exc.reason, keep_alive=False)
            except Exception:
                pass
        return False
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError):
        return False
