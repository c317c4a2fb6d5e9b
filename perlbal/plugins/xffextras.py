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
from perlbal.tunables import XFFExtrasTunables

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

        ctx = hook.ctx
        svc = ctx.service
        if ctx.trusted_peer() and svc.tunables.blind_proxy:
            return False
        headers = hook.headers
        if XFFExtrasTunables(svc.params).send_backend_port:
            headers = set_header(headers, "X-Forwarded-Port", str(ctx.local_port()))
        if XFFExtrasTunables(svc.params).send_backend_proto:
            headers = set_header(headers, "X-Forwarded-Proto", "https" if ctx.is_tls() else "http")
        hook.headers[:] = headers
        return False


PLUGIN = XFFExtras()
