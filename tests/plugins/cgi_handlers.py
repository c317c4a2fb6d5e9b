"""Cgilike handlers used by test_runtime_plugins.py (PERLHANDLER = tests.plugins.cgi_handlers:...)."""

from __future__ import annotations

import anyio

from perlbal.plugins.cgilike import DECLINED, HANDLED, POSTPONE_RESPONSE
from perlbal.plugins.cgirequest import CgiRequest


def hello(r: CgiRequest) -> int:
    if r.path() == "/hello":
        r.response_header("X-Handler", "hello")
        r.print("<p>Hello, ", dict(r.query_args()).get("name", "world"), "</p>")
        return HANDLED
    if r.path() == "/declined":
        return DECLINED
    if r.path() == "/raise":
        raise ValueError("handler broke")
    return 404


async def later(r: CgiRequest) -> int:
    async def finish() -> None:
        await anyio.sleep(0.05)
        r.print("done later")
        r.end_response()

    import asyncio

    asyncio.get_running_loop().create_task(finish())
    return POSTPONE_RESPONSE
