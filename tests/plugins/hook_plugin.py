"""A third-party plugin for the hook tests (test_more_hooks.py): it answers in
proxy_read_request for ``/read-answer`` and takes ``/takeover`` over in
backend_client_assigned, the way Perl plugins do."""

from __future__ import annotations

from perlbal.plugins import Plugin
from perlbal.plugins.hooks import (BackendClientAssigned, BackendReadableVerify,
                                   BackendWriteVerify, HandlePut, ModifyResponseHeaders,
                                   ProxyReadRequest, PutWriteout, ReturnToBase)


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


class MoreHooksProbe(Plugin):
    """The PUT, backend-verify and return_to_base hooks (test_more_hooks.py).

    Behaviour is chosen by path or service name: ``/plugin-put`` is answered in
    handle_put; ``/upper/...`` bodies are written upper-cased by put_writeout
    itself; service ``own`` verifies backends without OPTIONS; service
    ``deny`` fails every verification on the OPTIONS reply; what a
    backend_readable_verify saw is sent back as ``X-Verify-Saw``; selector
    ``sticky`` keeps a connection with the service it chose."""

    name = "MoreHooksProbe"
    seen: dict[str, str] = {}  # service -> what its backend verification saw

    async def handle_put(self, hook: HandlePut) -> bool:
        if not hook.ctx.head.target.startswith("/plugin-put"):
            return False
        await hook.ctx.send_full_response(200, [("X-Handled-Put", "1")], b"put by plugin")
        return True

    def put_writeout(self, hook: PutWriteout) -> bool:
        hook.ctx.scratch["pieces"] = hook.ctx.scratch.get("pieces", 0) + 1
        if not hook.ctx.head.target.startswith("/upper/"):
            return False
        with open(hook.path, "ab") as out:
            out.write(hook.data.upper())
        return True

    def backend_write_verify(self, hook: BackendWriteVerify) -> bool:
        if hook.service.name != "own":
            return False
        self.seen[hook.service.name] = "verified by plugin"
        hook.verified = True
        return True

    def backend_readable_verify(self, hook: BackendReadableVerify) -> bool:
        self.seen[hook.service.name] = hook.data.split(b"\r\n", 1)[0].decode("latin-1")
        if hook.service.name == "deny":
            hook.verified = False
            return True
        return False

    def modify_response_headers(self, hook: ModifyResponseHeaders) -> bool:
        if hook.backend:
            hook.headers.append(("X-Verify-Saw", self.seen.get(hook.ctx.service.name, "")))
        return False

    def return_to_base(self, hook: ReturnToBase) -> bool:
        hook.ctx.scratch["returned"] = True
        return hook.ctx.listener_service is not None and \
            hook.ctx.listener_service.name == "sticky"
