"""XFFExtras: extra X-Forwarded-* headers towards backends.

Config: two reverse_proxy parameters, settable once the plugin is LOADed:
``send_backend_port`` and ``send_backend_proto`` (booleans, default off).

Runtime (to come, when a backend is assigned a client): unless the client is a
trusted upstream proxy on a blind_proxy service, the backend request gets
``X-Forwarded-Port: <local port the client connected to>`` and/or
``X-Forwarded-Proto: http|https``.
"""

from __future__ import annotations

from perlbal.params import Kind, Param
from perlbal.plugins import Plugin

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


PLUGIN = XFFExtras()
