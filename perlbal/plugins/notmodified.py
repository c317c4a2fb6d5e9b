"""NotModified: answer 304 to any conditional GET for some hosts, unseen.

Config, once registered on a service: ``SET <svc>.notmodified.host_pattern =
<regex>``, kept in ``svc.extra["notmodified_host_pattern"]``.  As in Perl the
setter prints nothing on success (no OK).

Runtime: ``decide`` is the start_http_request decision, active once a pattern
is set, the one place it is made (explain calls it; the server does, through
``perlbal.routing.run_request_hooks``): a request whose Host matches the pattern (``re.search``) and that carries any
If-Modified-Since header gets "304 Not Modified" without reaching a backend or
the disk.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from perlbal.graph import Service
from perlbal.plugins import Plugin

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter
    from perlbal.routing import HookDecision, Request


class NotModified(Plugin):
    name = "NotModified"

    def decide(self, svc: Service, request: "Request") -> "HookDecision | None":
        """The start_http_request decision (routing.run_request_hooks; explain runs it too)."""
        return decide(svc, request)

    def setter(self, it: "Interpreter", svc: Service, key: str, value: str,
               call: "Call") -> bool | None:
        if key != "host_pattern":
            return None
        if not value or value == "0":  # Perl: return 0 unless $what && $val
            return False
        try:
            re.compile(value)
        except re.error as exc:
            return call.err(f"invalid regular expression: '{value}' ({exc})")
        svc.extra["notmodified_host_pattern"] = value
        return True

    def unregister(self, it: "Interpreter", svc: Service) -> None:
        svc.extra.pop("notmodified_host_pattern", None)


PLUGIN = NotModified()


def decide(svc: Service, request: "Request") -> "HookDecision | None":
    """304 "Not Modified" for a matching Host carrying any If-Modified-Since."""
    from perlbal.routing import HookDecision

    pattern = svc.extra.get("notmodified_host_pattern")
    if not pattern:
        return None
    host = request.head.get("Host")
    if not host or re.search(pattern, host) is None:
        return HookDecision("NotModified", False,
                            f"Host '{host or ''}' does not match host_pattern {pattern}")
    if not request.head.get("If-Modified-Since"):
        return HookDecision("NotModified", False, f"Host matches {pattern}, but the request "
                            "has no If-Modified-Since (send one to get 304)")
    return HookDecision("NotModified", True, f"Host matches {pattern} and If-Modified-Since "
                        "is present", 304, "Not Modified", rule=f"notmodified {svc.name}")
