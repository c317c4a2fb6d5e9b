"""Redirect: ``REDIRECT HOST <match_host> <target_host>`` on the context's service.

Both names are stored lower-cased in ``svc.extra["redirect_host"]``.  As in
Perl, the command prints nothing on success, not even OK on a verbose console.

Runtime (to come, a start_http_request hook): the Host (lower-cased, port
stripped) is looked up as Vhosts does: ``foo.site.com``, ``*.foo.site.com``,
``*.site.com``, ``*.com``, ``*`` (only ``*`` without a Host).  A hit answers
301 with ``Location: http://<target_host><request-uri>`` and an empty body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perlbal.graph import Service
from perlbal.grammar import ast
from perlbal.grammar.parser import SyntaxExtension
from perlbal.plugins import Plugin
from perlbal.plugins._common import context_service, perl_match

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter

USAGE = "usage: REDIRECT HOST <match_host> <target_host>"


class Redirect(Plugin):
    name = "Redirect"
    commands = (
        SyntaxExtension(
            keyword="redirect",
            plugin="Redirect",
            # Perl: ^redirect\s+host\s+(\S+)\s+(\S+)$
            rule='"redirect" REDIRECT_ARG REDIRECT_ARG REDIRECT_ARG',
            terminals="REDIRECT_ARG: /\\S+/",
            usage=USAGE,
        ),
    )

    def command(self, it: "Interpreter", node: ast.PluginCommand, call: "Call") -> bool:
        m = perl_match(r"redirect\s+host\s+(\S+)\s+(\S+)", node)
        if m is None:
            return call.err(USAGE)
        svc = context_service(it, call)
        if isinstance(svc, str):
            return call.err(svc)
        svc.extra.setdefault("redirect_host", {})[m.group(1).lower()] = m.group(2).lower()
        return True  # Perl returns 1 without $mc->ok: no OK line

    def unregister(self, it: "Interpreter", svc: Service) -> None:
        return None  # the map stays in extra_config, as in Perl


PLUGIN = Redirect()
