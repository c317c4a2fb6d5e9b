"""A third-party plugin for tests/uploads/test_upload_clock.py: its
start_proxy_request hook awaits half a second before the proxy goes on, as a
server busy elsewhere (a loaded machine, a first request's imports, a plugin
that awaits) reaches a request late."""

from __future__ import annotations

import anyio

from perlbal.plugins import Plugin
from perlbal.plugins.hooks import StartProxyRequest

LATE = 0.5


class LateStart(Plugin):
    name = "LateStart"

    async def start_proxy_request(self, hook: StartProxyRequest) -> bool:
        await anyio.sleep(LATE)
        return False
