"""A third-party plugin that raises in its hooks, for the isolation tests.

Found through a temporary ``perlbal.plugins`` entry point (see
test_runtime_plugins.py): requests whose path starts with ``/boom`` make
start_web_request / start_proxy_request raise."""

from __future__ import annotations

from perlbal.plugins import Plugin
from perlbal.plugins.hooks import StartProxyRequest, StartWebRequest


class Failing(Plugin):
    name = "Failing"

    def start_web_request(self, hook: StartWebRequest) -> bool:
        if hook.ctx.head.target.startswith("/boom"):
            raise RuntimeError("boom in start_web_request")
        return False

    async def start_proxy_request(self, hook: StartProxyRequest) -> bool:
        if hook.ctx.head.target.startswith("/boom"):
            raise RuntimeError("boom in start_proxy_request")
        return False
