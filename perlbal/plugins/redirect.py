"""Redirect: ``REDIRECT HOST <match_host> <target_host>`` on the context's service.

Both names are stored lower-cased in ``svc.extra["redirect_host"]``.  As in
Perl, the command prints nothing on success, not even OK on a verbose console.

Runtime: ``decide`` is the start_http_request decision, the one place it is
made (explain calls it; the server does, through
``perlbal.routing.run_request_hooks``): the Host (lower-cased, port
stripped) is looked up as Vhosts does: ``foo.site.com``, ``*.foo.site.com``,
``*.site.com``, ``*.com``, ``*`` (only ``*`` without a Host).  A hit answers
301 with ``Location: http://<target_host><request-uri>`` and an empty body.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from perlbal.graph import Service
from perlbal.grammar import ast
from perlbal.grammar.parser import PluginArgs, SyntaxExtension
from perlbal.plugins import Plugin
from perlbal.plugins._common import context_service

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter
    from perlbal.routing import HookDecision, Request

USAGE = "usage: REDIRECT HOST <match_host> <target_host>"


class RedirectHost(ast.PluginCommand):
    """``REDIRECT HOST <match_host> <target_host>`` on the context's service."""

    match_host: str
    target_host: str


def _build(args: PluginArgs) -> RedirectHost:
    match_host, target_host = args.every("REDIRECT_NAME")
    return args.build(RedirectHost, match_host=match_host, target_host=target_host)


class Redirect(Plugin):
    name = "Redirect"

    def decide(self, svc: Service, request: "Request") -> "HookDecision | None":
        """The start_http_request decision (routing.run_request_hooks; explain runs it too)."""
        return decide(svc, request)
    commands = (
        SyntaxExtension(
            keyword="redirect",
            plugin="Redirect",
            # Perl: ^redirect\s+host\s+(\S+)\s+(\S+)$
            rule='"redirect" REDIRECT_HOST REDIRECT_NAME REDIRECT_NAME',
            terminals="REDIRECT_HOST: /(?<= )host(?= )/\nREDIRECT_NAME: /(?<= )\\S+/\n",
            usage=USAGE,
            build=_build,
            mistakes=(("expected HOST after REDIRECT", ("redirect a b", "redirect hosts a b")),
                      ("expected two names: <match_host> <target_host>",
                       ("redirect host a", "redirect host a b c"))),
        ),
    )

    def command(self, it: "Interpreter", node: ast.PluginCommand, call: "Call") -> bool:
        assert isinstance(node, RedirectHost)
        svc = context_service(it, call)
        if isinstance(svc, str):
            return call.err(svc)
        svc.extra.setdefault("redirect_host", {})[node.match_host.lower()] = \
            node.target_host.lower()
        return True  # Perl returns 1 without $mc->ok: no OK line

    def unregister(self, it: "Interpreter", svc: Service) -> None:
        return None  # the map stays in extra_config, as in Perl


PLUGIN = Redirect()


def decide(svc: Service, request: "Request") -> "HookDecision | None":
    """301 to ``http://<target><request-uri>`` for the first REDIRECT HOST entry the
    Host matches (Perl's Redirect handle_request); None when there is no map."""
    from perlbal.routing import HookDecision, host_candidates

    mapping: dict[str, str] | None = svc.extra.get("redirect_host")
    if not mapping:
        return None
    host = (request.head.get("Host") or "").lower()  # Perl: lc, no trailing-dot strip
    host = re.sub(r":\d+\Z", "", host)
    for key in host_candidates(host or None):
        target = mapping.get(key)
        if target:
            location = f"http://{target}{request.head.target}"
            return HookDecision("Redirect", True, f"Host matches REDIRECT HOST {key} {target}",
                                301, None, (("Location", location), ("Content-Length", "0")),
                                rule=f"redirect {svc.name} {key}")
    return HookDecision("Redirect", False, f"Host '{host}' matches no REDIRECT HOST entry")
