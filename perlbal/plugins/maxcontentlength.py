"""MaxContentLength: refuse request bodies announced larger than a limit.

Config: the ``max_content_length`` parameter (integer bytes, 0 = no limit,
any role), settable once the plugin is LOADed.

Runtime: ``decide`` is the start_http_request decision on services the plugin
is registered on, the one place it is made (explain calls it; the server does,
through ``perlbal.routing.run_request_hooks``): a request whose Content-Length exceeds the limit is answered
413 "Content too long." before any of its body is read; requests without
Content-Length pass here.  A chunked body announces no length: the runtime
holds it to ``max_content_length`` as it arrives (``runtime/bodylimit.py``;
Perl lets it through).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perlbal.graph import Service
from perlbal.params import Kind, Param
from perlbal.plugins import Plugin
from perlbal.tunables import MaxContentLengthTunables

if TYPE_CHECKING:
    from perlbal.routing import HookDecision, Request


class MaxContentLength(Plugin):
    name = "MaxContentLength"

    def decide(self, svc: Service, request: "Request") -> "HookDecision | None":
        """The start_http_request decision (routing.run_request_hooks; explain runs it too)."""
        return decide(svc, request)
    params = (
        Param("max_content_length", Kind.INT, "Largest request body accepted, in bytes "
              "(0: no limit): a larger Content-Length gets 413 before the body is read, a "
              "chunked body 413 once it grows past it (Perl checks Content-Length only).",
              default="0", plugin="MaxContentLength"),
    )


PLUGIN = MaxContentLength()


def decide(svc: Service, request: "Request") -> "HookDecision":
    """413 "Content too long." when Content-Length exceeds ``max_content_length``."""
    from perlbal.routing import HookDecision

    limit = MaxContentLengthTunables(svc.params).max_content_length
    if limit <= 0:
        return HookDecision("MaxContentLength", False, "max_content_length is 0: no limit")
    length = request.head.content_length
    if not length:
        return HookDecision("MaxContentLength", False, "no Content-Length: passes")
    if length <= limit:
        return HookDecision("MaxContentLength", False,
                            f"Content-Length {length} <= max_content_length {limit}")
    return HookDecision("MaxContentLength", True,
                        f"Content-Length {length} > max_content_length {limit}", 413,
                        "Content too long.\n", rule=f"max_content_length {svc.name}")
