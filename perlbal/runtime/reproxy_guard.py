"""The run-time side of ``perlbal.reproxy_policy``: judge a reproxy target, refuse with a 502.

``runtime/reproxy.py`` calls ``guard_file`` before it serves an X-REPROXY-FILE
and ``guard_urls`` before it contacts X-REPROXY-URL targets (also for URLs
replayed from the reproxy cache, so a live ``SET`` takes effect at once).  A
refused target is never touched: the client gets ``502 Bad Gateway`` naming
the reason and one warning line is logged (logger ``perlbal.runtime``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from perlbal.http.errors import BackendProtocolError
from perlbal.http.reproxy import ReproxyTarget, parse_reproxy_file
from perlbal.reproxy_policy import file_verdict, url_refusal
from perlbal.runtime.context import RequestContext
from perlbal.runtime.diskio import inline_disk, run_disk

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

__all__ = ["guard_file", "guard_urls"]

log = logging.getLogger("perlbal.runtime")


async def _refuse(ctx: RequestContext, reason: str) -> None:
    log.warning("service %s: reproxy refused for %s %s: %s", ctx.service.name,
                ctx.head.method, ctx.head.target, reason)
    await ctx.send_simple(502, f"Reproxy refused: {reason}\n", keep_alive=False)


async def guard_file(ctx: RequestContext, value: str) -> str | None:
    """The X-REPROXY-FILE value to serve (resolved under reproxy_file_roots),
    or None when it was refused and the 502 has been sent."""
    roots = ctx.service.tunables.reproxy_file_roots
    if not roots:
        return value
    try:
        path = parse_reproxy_file(value)
    except BackendProtocolError:
        return value  # malformed: _reproxy_file answers 404 for it, as before
    verdict = await run_disk(inline_disk(ctx), file_verdict, path, roots)
    if verdict.refusal is not None:
        await _refuse(ctx, verdict.refusal)
        return None
    return verdict.path


async def guard_urls(runtime: "Runtime", ctx: RequestContext,
                     targets: list[ReproxyTarget]) -> bool:
    """True when reproxy_url_hosts forbids one of ``targets`` (the 502 has been sent)."""
    allowed = ctx.service.tunables.reproxy_url_hosts
    pool = runtime.graph.pools.get(ctx.service.pool_name or "")
    nodes = [(node.ip, node.port) for node in pool.nodes] if pool is not None else []
    refusal = url_refusal(targets, allowed, nodes)
    if refusal is None:
        return False
    await _refuse(ctx, refusal)
    return True
