"""LazyCDN: send web_server requests for missing or too-new files elsewhere.

Config: two web_server parameters, settable once the plugin is LOADed:
``fallback_service`` (a service name, not checked, as in Perl) and
``fallback_udp_ping_addr`` (``a.b.c.d:port``).

Runtime, the web server's post-stat hooks (plain and concatenated GET): when
a file is missing, or the request-URI's ``v=<n>`` number is newer than the
file's mtime, the request is handed to fallback_service (Perl's
adopt_base_client); with a ping address the request URI is also sent there
in a UDP datagram.  A fallback that does not exist leaves the request alone.
"""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING

from perlbal.params import Kind, Param
from perlbal.plugins import Plugin
from perlbal.plugins._common import PatternParam
from perlbal.tunables import LazyCDNTunables

if TYPE_CHECKING:
    from perlbal.plugins.hooks import (ConcatGetPoststatFileMissing, ConcatGetPoststatPreSend,
                                       Hook, StaticGetPoststatFileMissing,
                                       StaticGetPoststatPreSend)


async def _fall_back(hook: "Hook", last_modified: float | None) -> bool:
    """Perl's LazyCDN hook: True when the request went to the fallback service."""
    from perlbal.http.digits import decimal_value  # here: check loads plugins, never serves
    ctx = hook.ctx
    name = LazyCDNTunables(ctx.service.params).fallback_service
    fallback = ctx.service_named(name) if name is not None else None
    if fallback is None:
        return False
    uri = ctx.head.target
    if last_modified is not None:
        m = re.search(r"\bv=([0-9]+)\b", uri)
        version = decimal_value(m.group(1)) if m is not None else None
        # a version of more digits than any timestamp is newer than the file
        if m is None or (version is not None and version <= last_modified):
            return False
    ping = LazyCDNTunables(ctx.service.params).fallback_udp_ping_addr
    if ping:
        host, _, port = ping.rpartition(":")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(uri.encode("latin-1", "replace"), (host, int(port)))
            except OSError:  # Perl only warns when the ping socket fails
                pass
    ctx.last_keep_alive = await ctx.adopt(fallback)
    return True

_WS = ("web_server",)


class LazyCDN(Plugin):
    name = "LazyCDN"
    params = (
        Param("fallback_service", Kind.STRING, "Service taking requests for files missing "
              "from, or newer than, the docroot.", roles=_WS, plugin="LazyCDN"),
        PatternParam("fallback_udp_ping_addr", Kind.STRING, "ip:port told (by UDP) the URI "
                     "of each request handed to fallback_service.", roles=_WS,
                     plugin="LazyCDN", pattern=r"^\d+\.\d+\.\d+\.\d+:\d+$",
                     message="Expecting IP:port of form a.b.c.d:port."),
    )

    async def static_get_poststat_file_missing(self, hook: "StaticGetPoststatFileMissing") -> bool:
        return await _fall_back(hook, None)

    async def concat_get_poststat_file_missing(self, hook: "ConcatGetPoststatFileMissing") -> bool:
        return await _fall_back(hook, None)

    async def static_get_poststat_pre_send(self, hook: "StaticGetPoststatPreSend") -> bool:
        return await _fall_back(hook, hook.mtime)

    async def concat_get_poststat_pre_send(self, hook: "ConcatGetPoststatPreSend") -> bool:
        return await _fall_back(hook, hook.mtime)


PLUGIN = LazyCDN()
