"""XFFExtras: extra X-Forwarded-* headers towards backends.

Config: two reverse_proxy parameters, settable once the plugin is LOADed:
``send_backend_port`` and ``send_backend_proto`` (booleans, default off).

Runtime, the backend_client_assigned hook: unless the client is a trusted
upstream proxy on a blind_proxy service, the backend request gets
``X-Forwarded-Port: <local port the client connected to>`` and/or
``X-Forwarded-Proto: http|https``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perlbal.params import Kind, Param
from perlbal.plugins import Plugin

if TYPE_CHECKING:
    from perlbal.plugins.hooks import BackendClientAssigned

_P = "XFFExtras"
_RP = ("reverse_proxy",)


class XFFExtras(Plugin):
    name = "XFFExtras"
    params = (
        Param("send_backend_port", Kind.BOOL, "Send X-Forwarded-Port (the port the client "
              "connected to) to backends.", roles=_RP, default="0", plugin=_P),
        Param("send_backend_proto", Kind.BOOL, "Send X-Forwarded-Proto (http or https) to "
              "backends.", roles=_RP, default="0", plugin=_P),
    )

    def backend_client_assigned(self, hook: "BackendClientAssigned") -> bool:
        from perlbal.http import set_header  # here: check loads plugins, never serves
        from perlbal.runtime.proxy import _trusted

        ctx = hook.ctx
        svc = ctx.service
        if _trusted(svc, ctx.peer_ip) and svc.params.get("blind_proxy"):
            return False
        headers = hook.headers
        transport = getattr(ctx.stream, "_transport", None)
        if svc.params.get("send_backend_port"):
            local = transport.get_extra_info("sockname") if transport is not None else None
            port = int(local[1]) if isinstance(local, tuple) and len(local) > 1 else 0
            headers = set_header(headers, "X-Forwarded-Port", str(port))
        if svc.params.get("send_backend_proto"):
            tls = transport is not None and transport.get_extra_info("ssl_object") is not None
            headers = set_header(headers, "X-Forwarded-Proto", "https" if tls else "http")
        hook.headers[:] = headers
        return False


PLUGIN = XFFExtras()
