"""A third-party plugin that raises in its hooks, for the isolation tests.

Found through a temporary ``perlbal.plugins`` entry point (see
test_runtime_plugins.py): requests whose path starts with ``/boom`` make
start_web_request / start_proxy_request raise; requests for ``/crash`` make its
``decide`` raise, which nothing in the plugin API catches: the server's own
safety net answers them (clientconn._dispatch)."""

from __future__ import annotations

from perlbal.graph import Service
from perlbal.plugins import Plugin
from perlbal.plugins.hooks import StartProxyRequest, StartWebRequest
from perlbal.routing import HookDecision, Request


class Failing(Plugin):
    name = "Failing"

    def decide(self, svc: Service, request: Request) -> HookDecision | None:
        if request.head.target.startswith("/crash"):
            raise LookupError("crash in decide")
        return None

    def start_web_request(self, hook: StartWebRequest) -> bool:
        if hook.ctx.head.target.startswith("/boom"):
            raise RuntimeError("boom in start_web_request")
        return False

    async def start_proxy_request(self, hook: StartProxyRequest) -> bool:
        if hook.ctx.head.target.startswith("/boom"):
            raise RuntimeError("boom in start_proxy_request")
        return False
