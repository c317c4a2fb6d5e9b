"""FlvStreaming: seekable FLV video through a reverse proxy.

No commands or parameters; registration is refused on any role but
reverse_proxy, with Perl's message.

Runtime, reverse proxy hooks: a request for ``*.flv`` with a non-zero
``start=<offset>`` query parameter is sent to the backend with ``range:
bytes=<offset>-`` (start_proxy_request); the answer is turned into a 200
(Content-Type video/x-flv, no Content-Range or Accept-Ranges, Content-Length
plus 13: modify_response_headers) with the FLV file header
(``FLV\\x01\\x01\\0\\0\\0\\x09\\0\\0\\0\\x09``) sent before the body
(prepend_body).  Where Perl rewrote any answer, error pages included, ours
rewrites only 2xx answers, and only a decimal ``start`` is used (Perl copied
any decoded text into the Range header: a CR LF there split the backend request).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import replace
from typing import TYPE_CHECKING

from perlbal.graph import Service
from perlbal.plugins import Plugin, PluginError

if TYPE_CHECKING:
    from perlbal.interp import Interpreter
    from perlbal.plugins.hooks import ModifyResponseHeaders, PrependBody, StartProxyRequest
    from perlbal.plugins.view import RequestView

FLV_HEADER = b"FLV\x01\x01\x00\x00\x00\x09\x00\x00\x00\x09"


def _start(ctx: "RequestView") -> str | None:
    """The ``start`` query parameter of a ``.flv`` request, when true in Perl's sense."""
    parts = urllib.parse.urlsplit(ctx.head.target)
    if not parts.path.endswith(".flv"):
        return None
    # decoding never raises (undecodable bytes become U+FFFD), and only a
    # decimal offset is used: Perl wrote any decoded text into the backend's
    # Range header, so "%0d%0a" smuggled a second request to the backend
    values = urllib.parse.parse_qs(parts.query, errors="replace").get("start")
    start = values[0] if values else None
    if not start or start == "0" or not (start.isascii() and start.isdigit()):
        return None
    return start


class FlvStreaming(Plugin):
    name = "FlvStreaming"

    def register(self, it: "Interpreter", svc: Service) -> None:
        if svc.role != "reverse_proxy":
            raise PluginError("You can't load the flvstreaming plugin on a service not of "
                              "role reverse_proxy.")

    def start_proxy_request(self, hook: "StartProxyRequest") -> bool:
        from perlbal.http import set_header  # here: check loads plugins, never serves
        ctx = hook.ctx
        start = _start(ctx)
        if start is not None:
            headers = set_header(list(ctx.head.headers), "range", f"bytes={start}-")
            ctx.head = replace(ctx.head, headers=tuple(headers))
            ctx.scratch["flv"] = True
        return False

    def modify_response_headers(self, hook: "ModifyResponseHeaders") -> bool:
        from perlbal.http import set_header  # here: check loads plugins, never serves
        from perlbal.http.digits import decimal_value
        if not (hook.backend and hook.ctx.scratch.get("flv") and 200 <= hook.status < 300):
            return False
        hook.ctx.scratch["flv_prepend"] = True
        headers = [(k, v) for k, v in hook.headers
                   if k.lower() not in ("accept-ranges", "content-range")]
        headers = set_header(headers, "Content-Type", "video/x-flv")
        length = next((v for k, v in headers if k.lower() == "content-length"), None)
        size = decimal_value(length) if length is not None else None
        if size is not None:
            headers = set_header(headers, "Content-Length", str(size + len(FLV_HEADER)))
        hook.status = 200
        hook.headers[:] = headers
        return False

    def prepend_body(self, hook: "PrependBody") -> bool:
        if hook.ctx.scratch.get("flv_prepend"):
            hook.data += FLV_HEADER
        return False


PLUGIN = FlvStreaming()
