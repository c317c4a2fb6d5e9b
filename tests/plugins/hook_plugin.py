"""A third-party plugin for the hook tests (test_more_hooks.py): it answers in
proxy_read_request for ``/read-answer`` and takes ``/takeover`` over in
backend_client_assigned, the way Perl plugins do."""

from __future__ import annotations

from perlbal.plugins import Plugin
from perlbal.plugins.hooks import BackendClientAssigned, ProxyReadRequest


class HookProbe(Plugin):
    name = "HookProbe"

    async def proxy_read_request(self, hook: ProxyReadRequest) -> bool:
        if not hook.ctx.head.target.startswith("/read-answer"):
            return False
        body = hook.body
        await hook.ctx.send_full_response(200, [("X-Read", str(len(body)))], b"read:" + body)
        return True

    async def backend_client_assigned(self, hook: BackendClientAssigned) -> bool:
        if not hook.ctx.head.target.startswith("/takeover"):
            return False
        assert hook.backend is not None and hook.ipport
        await hook.ctx.send_full_response(200, [("X-Backend-Was", hook.ipport)], b"taken")
        return True
