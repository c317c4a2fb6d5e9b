"""FlvStreaming: seekable FLV video through a reverse proxy.

No commands or parameters; registration is refused on any role but
reverse_proxy, with Perl's message.

Runtime (to come, reverse proxy hooks): a request for ``*.flv`` with a
``start=<offset>`` query parameter is sent to the backend as a Range request
from that offset; the 206 answer is turned into a 200 (Content-Type video/x-flv, no
Content-Range or Accept-Ranges) with the FLV file header
(``FLV\\x01\\x01\\0\\0\\0\\x09\\0\\0\\0\\x09``) prepended to the body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perlbal.graph import Service
from perlbal.plugins import Plugin, PluginError

if TYPE_CHECKING:
    from perlbal.interp import Interpreter


class FlvStreaming(Plugin):
    name = "FlvStreaming"

    def register(self, it: "Interpreter", svc: Service) -> None:
        if svc.role != "reverse_proxy":
            raise PluginError("You can't load the flvstreaming plugin on a service not of "
                              "role reverse_proxy.")


PLUGIN = FlvStreaming()
