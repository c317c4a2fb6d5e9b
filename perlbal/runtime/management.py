"""The ``management`` role: the line console, and a web UI of the running proxy.

One port speaks both, decided per connection from the first bytes as
ClientManage.pm does (a method token and a space mean HTTP;
``perlbal.http.firstbytes``, called from ``clientconn``).

Console: each line ended by ``\\r?\\n`` is run through ``Interpreter.run_line``
with one ``CommandContext(verbose=True)`` per connection; reply lines go out
ended by ``\\r\\n``.  A line matching Perl's ``/^quit|exit$/`` closes the
connection.  Config commands act on the live graph at once (the runtime reads
it per request), so this is also the live-reconfiguration path.

HTTP: ``/`` is a page (``webui/``) that renders ``/json`` and polls it, so it
updates without a reload; ``/json`` is the same data; ``/timeline[?since=T]``
the per-second samples of the last 15 minutes its graphs draw (timeline.py);
``/socks``, ``/obj`` and ``/service?NAME`` are Perl's own three pages.

Invariants:
- the unread buffer never exceeds ``MAX_CONSOLE_LINE`` bytes: a client that
  sends more without a newline gets one ``ERROR`` line and is closed;
- a console connection silent for the management service's ``idle_timeout``
  (between lines as before the first) is closed; 0 means no limit.  Console
  connections are also capped (``Runtime``: at most ``max_connections`` open
  on management listeners), so idle consoles cannot exhaust descriptors;
- a command or page that raises is answered with an error and logged; the
  connection, the port and serving traffic carry on;
- the HTTP side only reads the graph and live stats; no request method, POST
  included, can change configuration through it.
"""

from __future__ import annotations

import html
import importlib.resources
import json
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any, Callable

import anyio
import anyio.abc
from anyio.abc import ByteStream

from perlbal import PERL_COMPAT_VERSION
from perlbal.interp import CommandContext
from perlbal.http import render_head
from perlbal.runtime.context import RequestContext, ServerHandle
from perlbal.runtime.poolstats import PooledStats
from perlbal.runtime.timeline import CAPACITY, node_states

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

log = logging.getLogger("perlbal.runtime")

#: Longest console line accepted (Perl had no limit; 64 KiB is far beyond any command).
MAX_CONSOLE_LINE = 65536

_QUIT = re.compile(r"^quit|exit$")
#: console commands whose replies show live numbers (SERVER workers: gathered first)
_LIVE_NUMBERS = frozenset({"show", "nodes", "node", "queues", "stats", "socks", "states",
                           "backends", "reproxy_state", "obj", "noverify", "proc"})
#: pages made of live numbers
_LIVE_PAGES = frozenset({"/", "/json", "/metrics", "/timeline", "/socks", "/obj", "/service"})


async def console(runtime: "Runtime", stream: ByteStream, buffered: bytes) -> None:
    try:
        peer = stream.extra(anyio.abc.SocketAttribute.remote_address)
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
    except Exception:
        where = "?"
    sock_id = runtime.live.open_sock("Perlbal::ClientManage",
                                     f"Perlbal::ClientManage(R): open to {where}")
    try:
        owner = _owning_service(runtime, stream)
        await _console_loop(runtime, stream, buffered, lambda: _idle_timeout(runtime, owner))
    finally:
        runtime.live.close_sock(sock_id)


def _owning_service(runtime: "Runtime", stream: ByteStream) -> str | None:
    """The management service whose listener accepted ``stream`` (None: not told)."""
    try:
        local = stream.extra(anyio.abc.SocketAttribute.local_address)
    except Exception:
        local = None
    for name, listener in runtime.listeners.items():
        try:
            bound = listener.sock.getsockname()
        except OSError:
            continue
        if isinstance(local, tuple) and isinstance(bound, tuple) and bound[1] == local[1] \
                and bound[0] in (local[0], "0.0.0.0", "::"):
            svc = runtime.graph.services.get(name)
            if svc is not None and svc.role == "management":
                return name
    return None


def _idle_timeout(runtime: "Runtime", service: str | None) -> float | None:
    """The console's idle limit now: ``idle_timeout`` of its management service,
    read at every wait so a live ``SET`` applies to open consoles too (30 s, the
    parameter's default, when the service cannot be told); None: no limit."""
    svc = runtime.graph.services.get(service) if service is not None else None
    value = svc.tunables.idle_timeout if svc is not None else 30
    return float(value) if value > 0 else None


async def _console_loop(runtime: "Runtime", stream: ByteStream, buffered: bytes,
                        idle_timeout: Callable[[], float | None] = lambda: None) -> None:
    ctx = CommandContext(verbose=True)
    buf = buffered
    while True:
        while True:
            newline = buf.find(b"\n")
            if newline == -1:
                break
            raw, buf = buf[:newline], buf[newline + 1:]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if not raw:
                continue
            line = raw.decode("utf-8", "replace")
            if _QUIT.search(line):
                return
            try:
                if (line.split() or [''])[0].lower() in _LIVE_NUMBERS:
                    await runtime.refresh_numbers()  # SERVER workers: every worker's
                lines = runtime.interp.run_line(line, ctx)
            except Exception as exc:  # a bug in one command must not kill the console
                log.exception("console command failed: %r", line)
                lines = [f"ERROR: internal error: {type(exc).__name__}"]
            if lines:
                try:
                    await stream.send("".join(f"{ln}\r\n" for ln in lines).encode("utf-8"))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    return
        if len(buf) > MAX_CONSOLE_LINE:
            await _refuse(stream)
            return
        data = b""
        with anyio.move_on_after(idle_timeout()):  # silent too long: close (None: no limit)
            try:
                data = await stream.receive(65536)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    OSError):
                return
        if not data:
            return
        buf += data


async def _refuse(stream: ByteStream) -> None:
    """One ERROR line, then close gently (``_linger``)."""
    try:
        await stream.send(b"ERROR: line too long\r\n")
    except Exception:
        return
    await _linger(stream)


async def _linger(stream: ByteStream) -> None:
    """Close gently after the last reply: input still in flight is read and
    dropped for a moment, so the client sees the reply instead of a reset."""
    try:
        await stream.send_eof()
        with anyio.move_on_after(1.0):
            while await stream.receive(65536):
                pass
    except Exception:
        pass


# --- HTTP: the web UI, its JSON, and Perl's three pages ---------------------------

_WEBUI = importlib.resources.files("perlbal.runtime") / "webui"
#: the web UI's files, read once (``cache_webui``, before a privilege drop)
_WEBUI_FILES: dict[str, bytes] = {}
_STATIC = {"/webui/app.js": ("app.js", "application/javascript; charset=utf-8"),
           "/webui/graphs.js": ("graphs.js", "application/javascript; charset=utf-8"),
           "/webui/style.css": ("style.css", "text/css; charset=utf-8")}
_QUEUES = ("normal", "highpri", "lowpri")


def cache_webui() -> None:
    """Read every web UI file now (preload.py calls this before ``SERVER user``)."""
    for name in ("index.html", *(name for name, _ctype in _STATIC.values())):
        _webui_file(name)


def _webui_file(name: str) -> bytes:
    data = _WEBUI_FILES.get(name)
    if data is None:
        data = _WEBUI_FILES[name] = (_WEBUI / name).read_bytes()
    return data


def status_snapshot(runtime: ServerHandle) -> dict[str, Any]:
    """Everything the web UI shows, JSON-ready; reads the graph and live stats only."""
    graph, interp = runtime.graph, runtime.interp
    live = interp.effects.stats()  # SERVER workers: every worker's numbers (poolstats)
    now = int(time.time())
    open_backends = live.backends()
    node_table = live.node_stats()
    services: dict[str, Any] = {}
    for name, svc in sorted(graph.services.items()):
        entry: dict[str, Any] = {"role": svc.role, "listen": svc.listen, "enabled": svc.enabled,
                                 "pool": svc.pool_name, "plugins": list(svc.plugin_order)}
        if svc.role in ("reverse_proxy", "web_server"):
            stats = live.service_stats(svc)
            entry["pending_clients"] = stats.waiting_clients
            entry["pending_backends"] = len(stats.pending_connects)
            entry["idle_backends"] = stats.bored_backends
        if svc.role == "reverse_proxy":
            entry["queues"] = {q: dict(zip(("age", "count"), live.queue(name, q))) for q in _QUEUES}
        services[name] = entry
    pools: dict[str, Any] = {}
    for name, pool in sorted(graph.pools.items()):
        nodes = []
        states = node_states(graph, runtime.live, name)  # health: the supervisor's
        for node in pool.nodes:
            codes = node_table.get(node.ipport, {}).get("responsecodes")
            summary = ""
            if isinstance(codes, list) and codes:
                counts: dict[str, int] = {}
                for code in codes[-100:]:
                    counts[str(code)] = counts.get(str(code), 0) + 1
                summary = ", ".join(f"{c}\u00d7{n}" for c, n in sorted(counts.items()))
            nodes.append({"ipport": node.ipport, "requests": pool.node_used.get(node.ipport, 0),
                          "open_backends": open_backends.get(node.ipport, 0),
                          "responsecodes": summary,
                          "state": states.get(node.ipport, "up")})
        pools[name] = {"balance_method": pool.balance_method, "nodefile": pool.nodefile,
                       "services": pool.use_count, "nodes": nodes}
    by_class: dict[str, int] = {}
    for sock in live.sockets():
        by_class[sock.cls] = by_class.get(sock.cls, 0) + 1
    clients = (live.clients() if isinstance(live, PooledStats)
               else getattr(runtime, "active_connections", 0))
    return {
        "version": PERL_COMPAT_VERSION, "pid": os.getpid(), "starttime": interp.start_time,
        "uptime": now - interp.start_time, "requests": live.requests(),
        "connections": {"clients": clients if isinstance(clients, int) else 0,
                        "by_class": by_class},
        "services": services, "pools": pools,
        "nodes": node_table,
        # SERVER workers: the numbers above are every worker's, added up
        "worker": {"id": 0, "count": getattr(runtime, "worker_count", 1),
                   "supervised": isinstance(live, PooledStats)},
    }


def _index_html(runtime: ServerHandle) -> str:
    state = json.dumps(status_snapshot(runtime)).replace("<", "\\u003c")
    return _webui_file("index.html").decode("utf-8").replace("__INITIAL_STATE__", state)


def _perl_page(runtime: ServerHandle, commands: list[str]) -> str:
    """Perl's ClientManage pages: each command's reply in a <pre> box (escaped here)."""
    body = ["<!DOCTYPE html>\n<html><head><title>perlbal management interface</title>"
            "<meta name=\"generator\" content=\"perlbal\" /></head><body>"]
    for command in commands:
        lines = runtime.interp.run_line(command, CommandContext(verbose=False))
        body.append(f"<pre><div style='margin-bottom: 5px; background: #ddd'><b>"
                    f"{html.escape(command)}</b></div>")
        body.extend(html.escape(line) + "\n" for line in lines)
        body.append("</pre>\n")
    body.append("<hr style='margin-top: 10px' /><p><a href='/'>Perlbal management</a>.</p>"
                "</body></html>\n")
    return "".join(body)


def _timeline_json(runtime: ServerHandle, query: str) -> str:
    """The ring of samples (only those after ``since=T`` when asked: the page polls
    for what is new); ``now`` lets the page place them on its 15-minute axis."""
    since = re.fullmatch(r"since=(\d{1,12})", query)
    timeline = runtime.live.timeline
    samples = timeline.since(int(since.group(1))) if since else list(timeline.samples)
    return json.dumps({"interval": 1, "capacity": CAPACITY, "now": time.time(),
                       "samples": samples}, separators=(",", ":"))


def _route(runtime: ServerHandle, target: str) -> tuple[int, str, bytes]:
    """(status, content type, body) for a GET; nothing here can change configuration."""
    path, _, query = target.partition("?")
    if path == "/metrics":  # Prometheus text format (metrics.py)
        from perlbal.runtime import metrics

        return 200, metrics.CONTENT_TYPE, metrics.render(runtime).encode("utf-8")  # type: ignore[arg-type]
    if path == "/json":
        return 200, "application/json", json.dumps(status_snapshot(runtime), indent=1).encode()
    if path == "/timeline":
        return 200, "application/json", _timeline_json(runtime, query).encode()
    if path == "/":  # the web UI: its query sets the page's refresh (?interval=)
        return 200, "text/html; charset=utf-8", _index_html(runtime).encode("utf-8")
    if path in _STATIC:
        name, ctype = _STATIC[path]
        return 200, ctype, _webui_file(name)
    # Perl's own pages answer exactly their target ('$uri eq "/socks"'): a query is a 404
    if target == "/socks":
        return 200, "text/html", _perl_page(runtime, ["socks summary", "socks"]).encode()
    if target == "/obj":
        return 200, "text/html", _perl_page(runtime, ["obj"]).encode()
    if path == "/service" and re.fullmatch(r"\w+", query):
        return 200, "text/html", _perl_page(runtime, [f"show service {query}"]).encode()
    return 404, "text/html", b"<h1>404 Not found</h1>\n"


async def handle_http(ctx: RequestContext) -> bool:
    """GET/HEAD pages; read-only whatever the method.  A POST's body is not
    waited for (Perl never reads it and answers at once): the reply goes out,
    then what arrives of the body is dropped while the connection closes."""
    try:
        if ctx.head.target.partition("?")[0] in _LIVE_PAGES:
            await ctx.server.refresh_numbers()  # SERVER workers: every worker's numbers
        status, ctype, body = _route(ctx.server, ctx.head.target)
    except Exception:  # a broken page must not take the management port down
        log.exception("management page %r failed", ctx.head.target)
        status, ctype, body = 500, "text/html", b"<h1>500 Internal Server Error</h1>\n"
    head = render_head(status, [("Content-Type", ctype), ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-store"), ("Connection", "close")])
    await ctx.send(head if ctx.head.method == "HEAD" else head + body)
    if not ctx.body_done:
        await _linger(ctx.stream)
    return False
