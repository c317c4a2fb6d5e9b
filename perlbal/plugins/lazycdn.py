"""LazyCDN: send web_server requests for missing or too-new files elsewhere.

Config: two web_server parameters, settable once the plugin is LOADed:
``fallback_service`` (a service name, not checked, as in Perl) and
``fallback_udp_ping_addr`` (``a.b.c.d:port``).

Runtime (to come, the web server's post-stat hooks, plain and concatenated
GET): when a file is missing, or the request's ``v=<n>`` query number is newer
than the file's mtime, the client is handed to fallback_service; with a ping
address the request URI is also sent there in a UDP datagram.
"""

from __future__ import annotations

from perlbal.params import Kind, Param
from perlbal.plugins import Plugin
from perlbal.plugins._common import PatternParam

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


PLUGIN = LazyCDN()
