"""The ``management`` role: the line console and a read-only HTTP status page.

Console (ClientManage.pm): each line ended by ``\\r?\\n`` is run through
``Interpreter.run_line`` with one ``CommandContext(verbose=True)`` per
connection; reply lines go out ended by ``\\r\\n``.  A line matching Perl's
``/^quit|exit$/`` closes the connection.

Invariants:
- the unread buffer never exceeds ``MAX_CONSOLE_LINE`` bytes: a client that
  sends more without a newline gets one ``ERROR`` line and is closed;
- the HTTP side only reads the graph and live stats; no request method, POST
  included, can change configuration through it.
"""

from __future__ import annotations

import html
import json
import logging
import re
from typing import TYPE_CHECKING

import anyio
from anyio.abc import ByteStream

from perlbal.interp import CommandContext
from perlbal.http import render_head
from perlbal.runtime.context import RequestContext, ServerHandle

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

log = logging.getLogger("perlbal.runtime")

#: Longest console line accepted (Perl had no limit; 64 KiB is far beyond any command).
MAX_CONSOLE_LINE = 65536

_QUIT = re.compile(r"^quit|exit$")


async def console(runtime: "Runtime", stream: ByteStream, buffered: bytes) -> None:
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
        try:
            data = await stream.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return
        buf += data


async def _refuse(stream: ByteStream) -> None:
    """One ERROR line, then close gently: input still in flight is read and dropped
    for a moment, so the client sees the line instead of a reset."""
    try:
        await stream.send(b"ERROR: line too long\r\n")
        await stream.send_eof()
        with anyio.move_on_after(1.0):
            while await stream.receive(65536):
                pass
    except Exception:
        pass


def _status_json(runtime: ServerHandle) -> dict[str, object]:
    graph = runtime.graph
    return {
        "services": {
            name: {"role": svc.role, "listen": svc.listen, "enabled": svc.enabled,
                   "pool": svc.pool_name}
            for name, svc in sorted(graph.services.items())
        },
        "pools": {
            name: {"nodes": {n.ipport: pool.node_used.get(n.ipport, 0) for n in pool.nodes}}
            for name, pool in sorted(graph.pools.items())
        },
        "requests": runtime.live.total_requests,
    }


def _status_html(runtime: ServerHandle) -> str:
    graph = runtime.graph
    out = ["<!DOCTYPE html>\n<html><head><title>perlbal management interface</title>"
           "<meta name=\"generator\" content=\"perlbal\" /></head><body>",
           "<h1>perlbal management interface</h1>", "<h2>Services</h2><ul>"]
    for name, svc in sorted(graph.services.items()):
        listen = f" ({html.escape(svc.listen)})" if svc.listen else ""
        out.append(f"<li>{html.escape(name)} - {html.escape(svc.role or '')}{listen}</li>")
    out.append("</ul><h2>Pools</h2><ul>")
    for name, pool in sorted(graph.pools.items()):
        nodes = ", ".join(f"{n.ipport} ({pool.node_used.get(n.ipport, 0)})" for n in pool.nodes)
        out.append(f"<li>{html.escape(name)}: {html.escape(nodes)}</li>")
    out.append("</ul><p><a href='/json'>JSON</a></p></body></html>\n")
    return "\n".join(out)


async def handle_http(ctx: RequestContext) -> bool:
    """GET /, GET /json; everything is read-only (a POST body is read and ignored)."""
    runtime = ctx.server
    if ctx.head.method == "POST":
        await ctx.skip_body()
    path = ctx.head.target.split("?", 1)[0]
    if path == "/json":
        body = json.dumps(_status_json(runtime), indent=1).encode("utf-8")
        ctype = "application/json"
    elif path == "/":
        body = _status_html(runtime).encode("utf-8")
        ctype = "text/html"
    else:
        await ctx.send_simple(404, keep_alive=False)
        return False
    head = render_head(200, [("Content-Type", ctype), ("Content-Length", str(len(body))),
                             ("Connection", "close")])
    await ctx.send(head if ctx.head.method == "HEAD" else head + body)
    return False
